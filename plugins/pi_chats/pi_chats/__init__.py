"""pi-framework plugin pi_chats (stub; filled by its issue)."""
