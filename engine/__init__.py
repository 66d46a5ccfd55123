"""The aisci engine: headless, asyncio-driven, never imports the TUI or textual."""
