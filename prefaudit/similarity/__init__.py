"""Prompt space: nearest neighbours (FAISS), near-duplicate detection and prompt clusters over
sentence embeddings, used by the coverage analyzer and the post-training evaluation."""
