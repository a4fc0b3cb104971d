#!/bin/sh
# Writes the password file from the environment, then runs Mosquitto. Devices' own accounts are added
# with `docker compose exec mosquitto mosquitto_passwd -b /mosquitto/data/passwd <device_id> <password>`.
set -eu
: "${WASTEGATE_MQTT_USER:?}" "${WASTEGATE_MQTT_PASSWORD:?}"
touch /mosquitto/data/passwd
mosquitto_passwd -b /mosquitto/data/passwd "$WASTEGATE_MQTT_USER" "$WASTEGATE_MQTT_PASSWORD"
chown mosquitto:mosquitto /mosquitto/data/passwd
chmod 0700 /mosquitto/data/passwd
exec mosquitto -c /mosquitto/config/mosquitto.conf
