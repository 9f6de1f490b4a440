"""Google Calendar: the API client wrapper and the Google ⇄ CRM wire mapping (with the content hash)."""
