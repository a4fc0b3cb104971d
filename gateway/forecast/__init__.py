"""Foresight from the containers' own fill histories: how fast each fills, when it will be full, and how
sure that is (`fill.py`). Pure: the `fill_forecast` rule keeps the history in its state, the bench and
`wastegate plan` feed it readings."""
