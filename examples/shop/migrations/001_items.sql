CREATE TABLE items (name TEXT PRIMARY KEY);
INSERT INTO items (name) VALUES ('teapot'), ('kettle')
