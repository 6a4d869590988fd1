"""The thin aiohttp intake: parse, call the engine, respond."""
