"""Local services for a first run and for tests: private MariaDB with binlog, PostgreSQL databases."""  # noqa: E501
