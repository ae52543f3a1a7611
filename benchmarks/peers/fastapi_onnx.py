"""Peer 1, what most users would write: a FastAPI endpoint around ONNX Runtime (run by uvicorn with its
defaults: one worker). `def`, not `async def`: ORT blocks, so FastAPI runs it in its thread pool.

  SKIMSERVE_PEER_MODEL=models/sst2-skim uvicorn benchmarks.peers.fastapi_onnx:app --port 8001
"""
import os

from fastapi import FastAPI
from pydantic import BaseModel

from benchmarks.peers.onnx_model import OnnxClassifier

model = OnnxClassifier(os.environ["SKIMSERVE_PEER_MODEL"])
app = FastAPI()


class Request(BaseModel):
    text: str
    threshold: float = 0.5


@app.post("/classify")
def classify(request: Request):
    return model(request.text, request.threshold)
