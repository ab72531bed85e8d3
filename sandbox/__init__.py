"""A simulated Bitrix24 portal: the REST methods Taskwarden calls, served over real HTTP, for the webhook
portal and for any number of portals with Taskwarden installed as an application (OAuth, events, offline queue).

See docs/sandbox.md. Everything lives in memory in one process; nothing here touches Redis.
"""
