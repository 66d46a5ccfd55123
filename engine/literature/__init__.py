"""Literature search over Semantic Scholar and OpenAlex, with cache, rate limits and failover."""
