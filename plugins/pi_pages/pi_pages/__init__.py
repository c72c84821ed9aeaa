"""pi-framework plugin pi_pages (stub; filled by its issue)."""
