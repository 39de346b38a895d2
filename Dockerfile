# PostgreSQL 15 with pganalytics_ml, built with the same make targets CI runs.
FROM postgres:15-bookworm

WORKDIR /usr/src/pganalytics_ml
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends make ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make deps && make install && rm -rf .venv /root/.cache/pip

CMD ["postgres", "-c", "shared_preload_libraries=pg_stat_statements,pg_cron", "-c", "cron.database_name=postgres"]
