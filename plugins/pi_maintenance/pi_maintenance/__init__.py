"""pi-framework plugin pi_maintenance (stub; filled by its issue)."""
