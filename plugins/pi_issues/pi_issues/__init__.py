"""pi-framework plugin pi_issues (stub; filled by its issue)."""
