-- A version-2 result store (schema version 2, Alembic revision 0002), made by sliver at commit 0484994:
-- a study 'v2' with two trials and their measurements, a LUT table and a claim (its expiry since set in 2023).
BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('0002');
CREATE TABLE claims (
	id INTEGER NOT NULL, 
	scope VARCHAR(300) NOT NULL, 
	config_key VARCHAR(64) NOT NULL, 
	owner VARCHAR(255) NOT NULL, 
	expires FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_claim UNIQUE (scope, config_key)
);
INSERT INTO "claims" VALUES(1,'net:fp','41f7abad2c00495e58790f0e','gone-host:1:abc',1700000000.0);
CREATE TABLE measurements (
	id INTEGER NOT NULL, 
	config_key VARCHAR(64) NOT NULL, 
	config_json TEXT NOT NULL, 
	supernet_hash VARCHAR(128) NOT NULL, 
	objective VARCHAR(64) NOT NULL, 
	fingerprint VARCHAR(128) NOT NULL, 
	value FLOAT, 
	status VARCHAR(16) NOT NULL, 
	error TEXT, 
	stats_json TEXT NOT NULL, 
	seconds FLOAT NOT NULL, 
	created DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_measurement UNIQUE (config_key, supernet_hash, objective, fingerprint)
);
INSERT INTO "measurements" VALUES(1,'1462bb4a1d3f03fb6ce4b6cb','{"w": 1}','net','accuracy','any',80.0,'ok',NULL,'{"n": 5}',0.5,'2026-12-04 13:41:54.713286');
INSERT INTO "measurements" VALUES(2,'a2bf24898851a653c2b1d7ab','{"w": 3}','net','accuracy','any',90.0,'ok',NULL,'{"n": 5}',0.5,'2026-12-04 13:41:54.729520');
CREATE TABLE meta (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "meta" VALUES('schema_version','2');
CREATE TABLE studies (
	id INTEGER NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	space_json TEXT NOT NULL, 
	objectives_json TEXT NOT NULL, 
	supernet_hash VARCHAR(128) NOT NULL, 
	fingerprint VARCHAR(128) NOT NULL, 
	settings_json TEXT NOT NULL, 
	created DATETIME NOT NULL, last_seq INTEGER DEFAULT '0' NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO "studies" VALUES(1,'v2','{"dimensions": [{"choices": [1, 2, 3], "length": null, "name": "w"}], "gates": []}','[{"additive": false, "cost": "expensive", "description": "top-1 on the validation split after BN recalibration", "direction": "max", "name": "accuracy", "unit": "%"}]','net','fp','{"budget": 3}','2026-12-04 13:41:54.699991',2);
CREATE TABLE tables (
	id INTEGER NOT NULL, 
	kind VARCHAR(64) NOT NULL, 
	fingerprint VARCHAR(128) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	data_json TEXT NOT NULL, 
	created DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_table UNIQUE (kind, fingerprint, name)
);
INSERT INTO "tables" VALUES(1,'lut','fp','ops','{"conv": 1.5}','2026-12-04 13:41:54.739236');
CREATE TABLE trials (
	id INTEGER NOT NULL, 
	study_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	config_key VARCHAR(64) NOT NULL, 
	config_json TEXT NOT NULL, 
	values_json TEXT NOT NULL, 
	errors_json TEXT NOT NULL, 
	cached BOOLEAN NOT NULL, 
	origin VARCHAR(64) NOT NULL, 
	batch INTEGER NOT NULL, 
	created DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_trial_config UNIQUE (study_id, config_key), 
	CONSTRAINT uq_trial_seq UNIQUE (study_id, seq), 
	FOREIGN KEY(study_id) REFERENCES studies (id)
);
INSERT INTO "trials" VALUES(1,1,1,'1462bb4a1d3f03fb6ce4b6cb','{"w": 1}','{"accuracy": 80.0}','{}',0,'search',0,'2026-12-04 13:41:54.718528');
INSERT INTO "trials" VALUES(2,1,2,'a2bf24898851a653c2b1d7ab','{"w": 3}','{"accuracy": 90.0}','{}',0,'search',0,'2026-12-04 13:41:54.730688');
CREATE INDEX ix_measurements_config_key ON measurements (config_key);
CREATE INDEX ix_measurements_supernet_hash ON measurements (supernet_hash);
CREATE INDEX ix_trials_study_id ON trials (study_id);
COMMIT;
