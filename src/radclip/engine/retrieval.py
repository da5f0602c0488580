"""Case retrieval: a text or image query, embedded by the matching encoder, searched in the study index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from radclip.engine.encoders import ImageEmbedder, TextEmbedder
from radclip.engine.study_index import StudyIndex


@dataclass(frozen=True)
class RetrievalHit:
    rank: int  # 1-based
    study_id: str
    similarity: float  # cosine between the query and the study's image embedding
    metadata: dict[str, Any]  # patient_id (a pseudonym), view, study_date, findings, source

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "study_id": self.study_id, "similarity": self.similarity, **self.metadata}


class Retriever:
    """Ranks indexed studies for a query; text and image encoders must share one embedding space."""

    def __init__(self, index: StudyIndex, text_embedder: TextEmbedder | None = None,
                 image_embedder: ImageEmbedder | None = None) -> None:  # fmt: skip
        self.index = index
        self.text_embedder = text_embedder
        self.image_embedder = image_embedder or index.embedder

    @staticmethod
    def _hits(rows: list[dict[str, Any]]) -> list[RetrievalHit]:
        out = []
        for rank, row in enumerate(rows, 1):
            meta = {k: v for k, v in row.items() if k not in ("id", "similarity", "study_id")}
            out.append(RetrievalHit(rank, row["study_id"], row["similarity"], meta))
        return out

    def search_text(self, query: str, k: int = 10) -> list[RetrievalHit]:
        if self.text_embedder is None:
            raise RuntimeError("text retrieval needs a text embedder; pass text_embedder=...")
        query = " ".join(query.split())
        if not query:
            raise ValueError("the text query is empty; describe the finding, e.g. 'left pleural effusion'")
        vec = np.asarray(self.text_embedder.encode_text([query]), np.float32)
        return self._hits(self.index.search(vec, k)[0])

    def search_image(self, batch: np.ndarray, k: int = 10) -> list[list[RetrievalHit]]:
        """``batch``: (N, 1, S, S) contract tensors; one ranked list per image."""
        vecs = np.asarray(self.image_embedder.encode_images(np.asarray(batch, np.float32)), np.float32)
        return [self._hits(rows) for rows in self.index.search(vecs, k)]

    def search_vector(self, vector: np.ndarray, k: int = 10) -> list[RetrievalHit]:
        return self._hits(self.index.search(np.atleast_2d(vector), k)[0])
