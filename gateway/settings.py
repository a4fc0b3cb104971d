"""All configuration, from the environment (prefix WASTEGATE_) or a .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WASTEGATE_", env_file=".env", extra="ignore")

    database_url: str = "postgresql://wastegate@127.0.0.1:5432/wastegate"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_client_id: str = "wastegate"
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    # MQTT v5 shared subscription group; replicas with the same group split the traffic between them. Only
    # one replica of a group consumes unless the broker deals a group's messages out by topic (EMQX's
    # `hash_topic`): then say so with `mqtt_shared_by_topic`. Mosquitto deals them out in turn, splitting
    # a device's readings between replicas, and a second active replica is refused.
    mqtt_shared_group: str | None = None
    mqtt_shared_by_topic: bool = False
    # Several replicas. With `standby`, a replica waits until the one consuming (same client id, or same
    # shared group) stops or dies, then takes over its session. Leases (the sweeps, the MQTT session) last
    # `lease_s` and are renewed every third of it: a dead replica's lease is taken within `lease_s` plus a
    # third (at once when it was a process of the same host).
    # RabbitMQ partitions (instead of MQTT): devices publish MQTT to RabbitMQ's MQTT plugin; the gateway
    # consumes `amqp_partitions` queues fed by a consistent-hash exchange, spread over the live replicas.
    amqp_url: str = ""  # amqp://user:pass@host:port/vhost
    amqp_partitions: int = Field(default=16, ge=1, le=256)
    amqp_prefetch: int = Field(default=1000, ge=1, le=65535)
    amqp_queue_type: Literal["classic", "quorum"] = "classic"
    standby: bool = False
    lease_s: float = Field(default=15.0, ge=1, le=300)
    replica_id: str | None = None  # default: host/pid/process/n
    # Extra filters whose messages no profile claims: they land in the dead letter as `no_profile`.
    mqtt_extra_subscriptions: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Unacknowledged QoS 1 messages the broker may have outstanding towards us (MQTT v5 Receive Maximum):
    # the bound on in-flight work, so a slow database turns into broker-side queueing, not memory growth.
    mqtt_receive_maximum: int = Field(default=5000, ge=1, le=65535)
    mqtt_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    mqtt_keepalive_s: int = Field(default=30, ge=5)
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None

    profiles_dir: Path = Path("device_profiles")
    rules_dir: Path = Path("rules")
    services_file: Path = Path("services.yaml")
    # The city's departments and partner entities (added to the store at start when missing), and the
    # working-hours calendar deadlines are counted on.
    organisations_file: Path = Path("organisations.yaml")
    calendar_file: Path = Path("calendar.yaml")
    # Several municipalities on one instance: a folder per jurisdiction (its id), each with its own
    # jurisdiction.yaml, services.yaml, organisations.yaml, calendar.yaml and rules/. Empty: one city, from
    # the files above.
    jurisdictions_dir: Path | None = None
    rules_reload_s: float = Field(default=5.0, gt=0, description="how often rule files are checked for changes")
    sweep_s: float = Field(default=60.0, gt=0, description="how often absence rules look for silent devices")
    # The collection ledger: how often the holder of the sweep lease folds what was received into it, and
    # how near a truck must come to a stop, during its window, to count as having passed it.
    ledger_s: float = Field(default=30.0, gt=0)
    ledger_pass_m: float = Field(default=30.0, gt=0, le=500)
    # `wastegate plan`: a routing service's table API (OSRM's /table/v1/driving) for road distances; empty:
    # straight-line (haversine) distances.
    routing_matrix_url: str = ""
    ledger_late_s: float = Field(default=2 * 86400, gt=0, description="the oldest device time a live round reads")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_enabled: bool = True
    gateway_enabled: bool = True  # off: an API-only process (`wastegate serve --no-gateway`)

    batch_max_size: int = Field(default=1000, ge=1)
    # A batch is committed at this size or age, whichever comes first: the age bounds latency at low load.
    batch_max_age_ms: int = Field(default=50, ge=1)
    max_payload_bytes: int = Field(default=64 * 1024, ge=1)
    # Per device, on the device's own clock: at most this many readings per second of device time, counted
    # over windows of `device_rate_window_s`; the excess goes to the dead letter as `rate_limited` (0 turns
    # it off). A backlog spread over time passes however fast it arrives.
    device_rate_limit_per_s: float = Field(default=20.0, ge=0)
    device_rate_window_s: float = Field(default=10.0, gt=0, le=3600)
    max_future_s: int = Field(default=600, ge=0)
    max_past_s: int = Field(default=7 * 24 * 3600, ge=60)
    device_refresh_s: float = Field(default=30.0, gt=0)
    # On SIGTERM: how long to keep trying to commit what was received before exiting (non-zero) with it
    # unacknowledged, for the broker to redeliver.
    shutdown_grace_s: float = Field(default=15.0, gt=0, le=300)

    # Telemetry storage. With TimescaleDB these become the hypertable's chunk interval and policies;
    # on plain PostgreSQL, daily partitions are created `partitions_ahead_days` ahead and dropped after
    # `retention_days` (0 keeps everything).
    timescale_chunk_interval: str = "1 day"
    timescale_compress_after: str = "7 days"
    retention_days: int = Field(default=365, ge=0)
    partitions_ahead_days: int = Field(default=7, ge=1)

    # Open311: keys that may POST requests; staff API: "token:role[:name]" with role viewer|operator|admin.
    open311_api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A citizen report is linked to an open device incident of its service this near and this recent.
    correlation_distance_m: float = Field(default=50.0, ge=0)
    correlation_window_s: int = Field(default=24 * 3600, ge=0)
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # A photo sent with a report (Open311 `media`): at most this many bytes and pixels (a decompression bomb
    # is refused before it is decoded). A report with a photo may have a body of up to twice this.
    photo_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    photo_max_pixels: int = Field(default=40_000_000, ge=10_000)
    # A reporter's rating of the outcome at or below this (1–5) reopens the report for review; 0: never.
    reopen_at_or_below_rating: int = Field(default=2, ge=0, le=5)
    api_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The console's base map: an OpenStreetMap-style tile URL template ({z}/{x}/{y}); empty, no base layer
    # (zones, devices and incidents are drawn all the same). Nothing is fetched unless this is set.
    map_tiles_url: str = ""
    map_tiles_attribution: str = ""
    # The rule lab's backtests read history from here (e.g. a read replica); empty, the database itself.
    lab_database_url: str = ""
    # Subscribers to incident changes (comma-separated URLs), and the secret their bodies are signed with.
    webhook_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: str = ""
    # E-mail to organisations and reporters, through the outbox: smtp://user:pass@host:port (STARTTLS when
    # the server offers it) or smtps:// (TLS from the start); empty, no e-mail is composed or sent.
    smtp_url: str = ""
    mail_from: str = "wastegate@localhost"
    # The municipality's language, for e-mail (en, ca, es), and the address its links start with.
    language: Literal["en", "ca", "es"] = "en"
    public_url: str = ""
    # The daily digest of overdue incidents goes to each organisation at this hour of the calendar's zone.
    mail_digest_hour: int = Field(default=8, ge=0, le=23)
    mail_poll_s: float = Field(default=2.0, gt=0)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @field_validator("mqtt_extra_subscriptions", "open311_api_keys", "api_tokens", "api_cors_origins", "webhook_urls",
                     mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
