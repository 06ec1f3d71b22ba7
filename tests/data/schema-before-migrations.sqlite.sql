-- The schema that Chirp's first release (before migrations) created with
-- create_tables(safe=True), dumped from SQLite. tests/test_migrations.py builds it,
-- fills it and upgrades it.
CREATE TABLE "user" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "username" VARCHAR(30) NOT NULL, "email" VARCHAR(254) NOT NULL, "password" VARCHAR(255) NOT NULL, "join_date" DATETIME NOT NULL, "active" INTEGER NOT NULL, "admin" INTEGER NOT NULL);
CREATE UNIQUE INDEX "user_username" ON "user" ("username");
CREATE UNIQUE INDEX "user_email" ON "user" ("email");
CREATE INDEX "user_join_date" ON "user" ("join_date");
CREATE INDEX "user_active" ON "user" ("active");
CREATE UNIQUE INDEX "user_username_lower" ON "user" (LOWER("username"));
CREATE TABLE "apitoken" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "user_id" INTEGER NOT NULL, "name" VARCHAR(50) NOT NULL, "token_hash" VARCHAR(64) NOT NULL, "created_date" DATETIME NOT NULL, "last_used" DATETIME, FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE);
CREATE INDEX "apitoken_user_id" ON "apitoken" ("user_id");
CREATE UNIQUE INDEX "apitoken_token_hash" ON "apitoken" ("token_hash");
CREATE TABLE "auditentry" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "actor_id" INTEGER, "action" VARCHAR(50) NOT NULL, "model_name" VARCHAR(50) NOT NULL, "object_id" TEXT NOT NULL, "changes" TEXT NOT NULL, "created_date" DATETIME NOT NULL, FOREIGN KEY ("actor_id") REFERENCES "user" ("id") ON DELETE SET NULL);
CREATE INDEX "auditentry_actor_id" ON "auditentry" ("actor_id");
CREATE INDEX "auditentry_created_date" ON "auditentry" ("created_date");
CREATE TABLE "message" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "user_id" INTEGER NOT NULL, "content" TEXT NOT NULL CHECK (length(content) BETWEEN 1 AND 280), "pub_date" DATETIME NOT NULL, FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE);
CREATE INDEX "message_user_id" ON "message" ("user_id");
CREATE INDEX "message_pub_date" ON "message" ("pub_date");
CREATE TABLE "note" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "user_id" INTEGER NOT NULL, "message" TEXT NOT NULL, "status" INTEGER NOT NULL, "created_date" DATETIME NOT NULL, FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE);
CREATE INDEX "note_user_id" ON "note" ("user_id");
CREATE INDEX "note_created_date" ON "note" ("created_date");
CREATE TABLE "relationship" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "from_user_id" INTEGER NOT NULL, "to_user_id" INTEGER NOT NULL, "created_date" DATETIME NOT NULL, FOREIGN KEY ("from_user_id") REFERENCES "user" ("id") ON DELETE CASCADE, FOREIGN KEY ("to_user_id") REFERENCES "user" ("id") ON DELETE CASCADE, CHECK (from_user_id <> to_user_id));
CREATE INDEX "relationship_from_user_id" ON "relationship" ("from_user_id");
CREATE INDEX "relationship_to_user_id" ON "relationship" ("to_user_id");
CREATE UNIQUE INDEX "relationship_from_user_id_to_user_id" ON "relationship" ("from_user_id", "to_user_id");
