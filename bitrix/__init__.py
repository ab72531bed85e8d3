"""A thin Bitrix24 REST client: transport, envelopes, errors, the shared budget, retries, batch."""
