-- 004 down. The tables are archived in schema ruleiq_archive, not dropped (see V1's note).
DROP TABLE report_schedules;
DROP TABLE integration_configurations;
