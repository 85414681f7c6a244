"""An independent MCP client for the kspan tests: the Python `mcp` SDK.

usage: py_client.py stdio TRACE_ID -- COMMAND ARGS...
       py_client.py http  TRACE_ID URL        (bearer token from $KSPAN_MCP_TOKEN, if set)

Lists the tools, calls explain_request(trace_id) and a malformed call, and
prints one JSON object: {"tools": [...], "explain": structured_content,
"explain_is_error": bool, "bad_is_error": bool, "bad_text": str}.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


async def run(server) -> dict:
    async with Client(server) as client:
        tools = await client.list_tools()
        res = await client.call_tool("explain_request", {"trace_id": TRACE_ID})
        bad = await client.call_tool("explain_request", {"trace_id": "not-a-trace"})
        return {
            "tools": sorted(t.name for t in tools.tools),
            "explain": res.structured_content,
            "explain_is_error": bool(res.is_error),
            "bad_is_error": bool(bad.is_error),
            "bad_text": bad.content[0].text if bad.content else "",
        }


def main() -> None:
    global TRACE_ID
    mode, TRACE_ID = sys.argv[1], sys.argv[2]
    if mode == "stdio":
        cmd = sys.argv[sys.argv.index("--") + 1:]
        server = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    elif mode == "http":
        token = os.environ.get("KSPAN_MCP_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        server = streamable_http_client(sys.argv[3], http_client=httpx2.AsyncClient(headers=headers, timeout=30))
    else:
        raise SystemExit(f"unknown mode {mode}")
    out = asyncio.run(run(server))
    print(json.dumps(out))


TRACE_ID = ""
if __name__ == "__main__":
    main()
