"""A real MCP client (the Python `mcp` SDK) asking a kspan for
explain_request(TRACE_ID) over Streamable HTTP (bearer token from
$KSPAN_MCP_TOKEN). Prints {"elapsed_ms", "is_error", "structured", "text"}.

usage: py_explain.py URL TRACE_ID
"""
import asyncio
import json
import os
import sys
import time

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main() -> None:
    url, trace_id = sys.argv[1], sys.argv[2]
    token = os.environ["KSPAN_MCP_TOKEN"]
    server = streamable_http_client(url, http_client=httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30))
    async with Client(server) as client:
        t0 = time.monotonic()
        res = await client.call_tool("explain_request", {"trace_id": trace_id})
        elapsed = (time.monotonic() - t0) * 1000
        print(json.dumps({
            "elapsed_ms": elapsed, "is_error": bool(res.is_error), "structured": res.structured_content,
            "text": res.content[0].text if res.content else "",
        }), flush=True)


asyncio.run(main())
