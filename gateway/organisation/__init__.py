"""The city's organisation: departments and partner entities (`directory`), which of them an incident
goes to and by when (`routing`, on the working-hours `calendar`), and the e-mail that tells them and the
reporters (`mail`). The store keeps the records; this package decides."""
