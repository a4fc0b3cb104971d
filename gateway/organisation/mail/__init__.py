"""E-mail through an outbox: `compose` turns incident events into messages in `mail_outbox` (to the
organisation an incident is routed to, to the reporter who gave an address) and the daily digest of
overdue incidents; `send` sends them over SMTP with aiosmtplib. A mail server that is down holds mail in
the outbox; ingestion never waits for it. Templates are files in `templates/<language>/`."""
