"""A simulated Bitrix24 portal: the REST methods Taskwarden calls, served over real HTTP.

See docs/sandbox.md. Everything lives in memory in one process; nothing here touches Redis.
"""
