"""The old funding_api_server.py design, as reference: FastAPI + uvicorn
(one worker) serving `/funding/{symbol}` from an in-memory dict.

The dict holds the same entries volspike's `/funding` served during the
bench (file named by FUNDING_DATA), so both servers answer the same JSON;
`ageSeconds` is computed per request, as volspike does.

run: FUNDING_DATA=file.json uvicorn --app-dir loadtest fastapi_funding:app --workers 1
"""

import json
import os
import time

from fastapi import FastAPI, HTTPException

with open(os.environ["FUNDING_DATA"], encoding="utf-8") as f:
    _entries = json.load(f)["data"]

FUNDING = {e["symbol"]: e for e in _entries}

app = FastAPI()


@app.get("/funding/{symbol}")
def funding(symbol: str):
    entry = FUNDING.get(symbol.upper())
    if entry is None:
        raise HTTPException(status_code=404, detail=f"unknown symbol {symbol}")
    now_ms = time.time() * 1000
    answer = dict(entry)
    answer["ageSeconds"] = round((now_ms - entry["updatedAt"]) / 1000, 3)
    return answer
