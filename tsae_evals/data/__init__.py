"""Text sources and token windows."""

from tsae_evals.data.documents import DEFAULT_DATASET, Documents, load_documents
from tsae_evals.data.windows import TokenWindows, make_windows

__all__ = ["DEFAULT_DATASET", "Documents", "TokenWindows", "load_documents", "make_windows"]
