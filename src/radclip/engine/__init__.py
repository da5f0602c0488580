"""The screening and search engine: prompt registry, text-embedding cache, embedding index, screening rules, retrieval."""
