"""The gateway's inbound side: client protocols (OpenAI, Anthropic) ⇄ aiwire's canonical types.

The modules here are pure and framework-independent (bytes in, canonical objects out, and back);
the ASGI app that serves them lives next to them.
"""
