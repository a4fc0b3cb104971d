FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir .
COPY device_profiles ./device_profiles
COPY rules ./rules
# the service catalogue, the organisations it routes to, and the working-hours calendar with its holidays
COPY services.yaml organisations.yaml calendar.yaml holidays.txt ./
USER nobody
ENV WASTEGATE_PROFILES_DIR=/app/device_profiles WASTEGATE_RULES_DIR=/app/rules WASTEGATE_API_HOST=0.0.0.0
EXPOSE 8000
CMD ["wastegate", "serve", "--log-level", "info"]
