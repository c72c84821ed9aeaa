"""pi-framework plugin pi_docs (stub; filled by its issue)."""
