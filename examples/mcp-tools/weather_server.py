"""A small MCP server on stdio, written with the official Python SDK (`mcp`).

agentlog's MCP bridge serves it on Kafka topics (see README.md here). It has the
tools the MCP-over-topics tests exercise: a plain tool with structured output, one
with a side effect (to show that a redelivered request does not run it twice), a
slow one (timeouts, cancellation), one that reports progress, one that fails, and
one that adds a tool and tells clients the tool list changed.

Run it directly to try it with any MCP client: `python3 weather_server.py` (stdio), or
`python3 weather_server.py --http PORT` (streamable HTTP on 127.0.0.1:PORT/mcp).
"""

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("weather", instructions="Weather forecasts for cities.")

# Cities the server knows; anything else is a tool error the caller sees.
FORECASTS = {
    "oslo": {"temp_c": 21, "conditions": "sunny"},
    "bergen": {"temp_c": 12, "conditions": "rain"},
    "tromso": {"temp_c": 4, "conditions": "snow"},
}


@server.tool()
def forecast(city: str) -> dict:
    """Today's forecast for a city: temperature in Celsius and conditions."""
    known = FORECASTS.get(city.strip().lower())
    if known is None:
        raise ToolError(f"no forecast for {city!r}; known cities: {', '.join(sorted(FORECASTS))}")
    return {"city": city, **known}


@server.tool()
def record_observation(note: str) -> str:
    """Appends an observation to the log file named by WEATHER_OBSERVATIONS."""
    path = os.environ.get("WEATHER_OBSERVATIONS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(note + "\n")
    return "recorded"


@server.tool()
async def slow_forecast(ms: int) -> str:
    """Answers after `ms` milliseconds."""
    await asyncio.sleep(ms / 1000)
    return "done"


@server.tool()
async def regional_forecast(regions: int, ctx: Context) -> str:
    """Forecasts `regions` regions one by one, reporting progress."""
    for done in range(1, regions + 1):
        await ctx.report_progress(done, regions, f"region {done} of {regions}")
        await asyncio.sleep(0.01)
    return f"{regions} regions forecast"


def alerts(city: str) -> str:
    """Weather alerts for a city."""
    return f"no alerts for {city}"


@server.tool()
async def enable_alerts(ctx: Context) -> str:
    """Adds the `alerts` tool and notifies clients that the tool list changed."""
    server.add_tool(alerts)
    await ctx.request_context.session.send_tool_list_changed()
    return "alerts enabled"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
