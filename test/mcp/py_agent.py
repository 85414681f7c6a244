"""A scripted MCP agent for the kspan tests (the Python `mcp` SDK): it follows
the server's investigate_slow_request prompt, step by step, as written.

usage: py_agent.py SERVICE[,SERVICE...] -- COMMAND ARGS...   (stdio: the client starts kspan)

For each service: get the prompt, run step 1 as the prompt spells it
(find_slow_requests {...}), take the slowest request, run explain_request on
its trace, then the one drill-down call the prompt lists for the top cause's
kind (placeholders CULPRIT_PID / SPAN_PID / SPAN_TID filled in, plus a small
limit). Prints one JSON object per line of stdout, one per service:
{"service", "calls": [{"tool", "arguments", "bytes"}], "bytes", "cause",
"share", "culprit", "span", "confirm"}; "bytes" is the size of every tool
result it read (the JSON-RPC result: text content + structuredContent).
"""

import asyncio
import json
import os
import re
import sys

from mcp import Client, StdioServerParameters


def result_bytes(res) -> int:
    return len(json.dumps(res.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":")).encode())


def first_call(prompt: str) -> tuple[str, dict]:
    m = re.search(r"^1\. (\w+) (\{.*?\})", prompt, re.M)
    if not m:
        raise SystemExit(f"no step 1 call in the prompt:\n{prompt}")
    return m.group(1), json.loads(m.group(2))


def drill_downs(prompt: str) -> dict[str, tuple[str, str]]:
    """cause kind -> (tool, JSON arguments with placeholders), from the prompt's list."""
    out = {}
    for m in re.finditer(r"^\s+- (\w+): (\w+) (\{.*?\})", prompt, re.M):
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def confirm(tool: str, sc: dict) -> dict:
    """The fact a drill-down result adds, read generically from its structured content."""
    if tool == "futex_contention" and sc.get("words"):
        w = sc["words"][0]
        return {"uaddr": w["uaddr"], "holder": w["holders"][0] if w["holders"] else None, "waits": w["waits"]}
    if tool == "query_off_cpu":
        by = {}
        for iv in sc.get("intervals", []):
            p = iv.get("preempted_by")
            if p:
                k = (p["pid"], p["comm"])
                by[k] = by.get(k, 0) + iv["duration_ns"]
        if by:
            (pid, comm), ns = max(by.items(), key=lambda x: x[1])
            return {"preempted_by": {"pid": pid, "comm": comm}, "ns": ns}
        return {}
    if tool == "query_events" and sc.get("groups"):
        groups = [g for g in sc["groups"] if g["key"] not in ("not preempted", "not woken")]
        if groups:
            g = groups[0]
            return {"top_group": g["key"], "sum_ns": g["sum_ns"], "count": g["count"]}
    return {}


async def investigate(client: Client, service: str) -> dict:
    calls = []

    async def call(tool: str, args: dict) -> dict:
        res = await client.call_tool(tool, args)
        calls.append({"tool": tool, "arguments": args, "bytes": result_bytes(res)})
        if res.is_error:
            raise SystemExit(f"{tool} {args} failed: {res.content[0].text if res.content else ''}")
        return res.structured_content

    prompt = (await client.get_prompt("investigate_slow_request", {"service": service})).messages[0].content.text
    tool, args = first_call(prompt)
    found = await call(tool, args)
    if not found["requests"]:
        raise SystemExit(f"{tool} {args}: no requests: {found['notes']}")
    trace_id = found["requests"][0]["trace_id"]
    if "explain_request" not in prompt:
        raise SystemExit("the prompt does not say to explain the request")
    exp = await call("explain_request", {"trace_id": trace_id})
    span = max(exp["spans"], key=lambda s: s["duration_ns"])
    top = span["causes"][0]
    culprit = top.get("culprit")
    out = {"service": service, "trace_id": trace_id, "cause": top["kind"], "share": top["share"], "culprit": culprit,
           "span": {"pid": span["correlation"]["pid"], "tid": span["correlation"]["tid"]}, "confirm": {}}
    drill = drill_downs(prompt).get(top["kind"])
    if drill:
        dtool, template = drill
        filled = (template.replace("CULPRIT_PID", str((culprit or {}).get("pid") or span["correlation"]["pid"]))
                  .replace("SPAN_PID", str(span["correlation"]["pid"])).replace("SPAN_TID", str(span["correlation"]["tid"])))
        dargs = json.loads(filled)
        dargs.setdefault("limit", 10)
        out["confirm"] = confirm(dtool, await call(dtool, dargs))
    out["calls"] = calls
    out["bytes"] = sum(c["bytes"] for c in calls)
    return out


async def main() -> None:
    services = sys.argv[1].split(",")
    cmd = sys.argv[sys.argv.index("--") + 1:]
    server = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    async with Client(server) as client:
        for svc in services:
            print(json.dumps(await investigate(client, svc)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
