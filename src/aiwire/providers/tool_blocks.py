"""Streamed tool calls of protocols that number their content blocks (Anthropic Messages, Bedrock
ConverseStream): a block that starts a tool call becomes an OpenAI tool-call delta with its own
index, and the block's JSON fragments become that call's ``arguments`` deltas.

A forced ``response_format`` tool (``json_tool``: how JSON output is asked of these protocols)
is no tool call for the client: its fragments are the answer's content.
"""

from __future__ import annotations

from typing import Any

from aiwire.types import Delta, FunctionCallDelta, ToolCallDelta, new_id


class ToolBlocks:
    __slots__ = ("json_blocks", "json_tool", "tool_index")

    def __init__(self, json_tool: str | None) -> None:
        self.json_tool = json_tool
        self.tool_index: dict[int, int] = {}  # content block index → OpenAI tool-call index
        self.json_blocks: set[int] = set()  # blocks of the forced response_format tool

    def start(self, index: int, call_id: Any, name: Any) -> Delta | None:
        """The delta announcing the tool call block ``index`` starts (None: nothing to send)."""
        if self.json_tool is not None and name == self.json_tool:
            self.json_blocks.add(index)
            return None
        k = self.tool_index[index] = len(self.tool_index)
        call = ToolCallDelta(
            index=k,
            id=str(call_id or new_id("call_")),
            type="function",
            function=FunctionCallDelta(name=str(name or ""), arguments=""),
        )
        return Delta(tool_calls=[call])

    def fragment(self, index: Any, text: str) -> Delta | None:
        """The delta for a JSON fragment of block ``index`` (None: not a block we know)."""
        if index in self.json_blocks:
            return Delta(content=text)
        if isinstance(index, int) and index in self.tool_index:
            call = ToolCallDelta(
                index=self.tool_index[index], function=FunctionCallDelta(arguments=text)
            )
            return Delta(tool_calls=[call])
        return None
