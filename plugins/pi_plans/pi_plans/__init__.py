"""pi-framework plugin pi_plans (stub; filled by its issue)."""
