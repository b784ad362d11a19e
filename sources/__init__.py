"""Change capture from MySQL/MariaDB: binlog reading, snapshots, and the jobs that run them."""
