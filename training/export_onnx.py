"""python -m training.export_onnx models/<name> | --all : thin alias of `python -m service.onnx_export` (no torch)."""
import sys

from service.onnx_export.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
