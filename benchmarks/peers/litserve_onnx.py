"""Peer 2, an established serving framework: LitServe (PyPI `litserve`, in its own venv, which
benchmarks/http.py builds) around the same ONNX Runtime model. Its defaults: one worker process behind
the API process, requests handed over through queues.

  SKIMSERVE_PEER_MODEL=models/sst2-skim python benchmarks/peers/litserve_onnx.py 8003
"""
import os
import sys

import litserve as ls

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from benchmarks.peers.onnx_model import OnnxClassifier  # noqa: E402


class ClassifyAPI(ls.LitAPI):
    def setup(self, device):
        self.model = OnnxClassifier(os.environ["SKIMSERVE_PEER_MODEL"])

    def decode_request(self, request):
        return request["text"], float(request.get("threshold", 0.5))

    def predict(self, item):
        return self.model(*item)

    def encode_response(self, output):
        return output


if __name__ == "__main__":
    ls.LitServer(ClassifyAPI(), accelerator="cpu").run(port=int(sys.argv[1]), generate_client_file=False)
