"""The floor: a FastAPI endpoint with a pydantic body that does no model work at all.

  uvicorn benchmarks.peers.trivial:app --port 8002
"""
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Request(BaseModel):
    text: str
    threshold: float = 0.5


@app.post("/classify")
async def classify(request: Request):
    return {"length": len(request.text)}
