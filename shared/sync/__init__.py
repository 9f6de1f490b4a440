"""The sync engine: one conflict policy, Google → CRM and CRM → Google, coalescing and the cron sweeps."""
