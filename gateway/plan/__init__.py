"""Tomorrow's route (`wastegate plan`): the containers due that day (on their schedule, or forecast to
pass the full level), the trucks with their capacity, a depot and a transfer station from the zones, and
a route per truck from VROOM (`routes.py`), written as GeoJSON, GPX and a printable list per driver
(`export.py`)."""
