# PostgreSQL 15 with pganalytics_ml, built with the same make targets CI runs (.ci/run: make deps, make test).
#   docker build -t pganalytics_ml .
#   docker run -d -e POSTGRES_PASSWORD=... -e POSTGRES_DB=pganalytics -p 5432:5432 pganalytics_ml
# On first start (an empty data directory) it creates pg_stat_statements, pg_cron, hypopg, pganalytics_ml and
# its schedules in POSTGRES_DB; see docs/operations.md.
FROM postgres:15-bookworm

WORKDIR /usr/src/pganalytics_ml
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends make ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# Only what the server needs: the Debian packages, the PL/Python libraries, the extension.
RUN make deps DEV_TOOLS=0 && make install && rm -rf /var/lib/apt/lists/* /root/.cache/pip

# initdb copies this sample into every new data directory.
RUN cat docker/postgresql.conf >> /usr/share/postgresql/postgresql.conf.sample \
    && install -m 0755 docker/initdb.sh /docker-entrypoint-initdb.d/50-pganalytics_ml.sh \
    && install -m 0755 docker/entrypoint.sh /usr/local/bin/pganalytics_ml-entrypoint.sh

ENTRYPOINT ["pganalytics_ml-entrypoint.sh"]
CMD ["postgres"]
