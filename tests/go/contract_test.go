package contract

import (
	"context"
	"database/sql"
	"encoding/json"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"
)

// The statements this test runs. Every statement the doc has must be one of them (checked first), and
// must have answered by the end; one the doc does not have yet (the patterns) joins the run when it does.
var exercised = map[string]bool{
	"ingest": true, "status": true, "train_async": true, "job_status": true, "train": true, "models": true,
	"predict": true, "predict_row": true, "predict_all": true, "validate": true, "activate": true,
	"detect_patterns": true, "patterns": true, "predict_scenario": true,
}

// The environment tests/python/test_go_driver.py gives: a database with real history of SERVER for
// the statements in PGML_QUERY_HASHES, and login roles holding only the grants the doc asks for.
type setup struct {
	doc, dsn, server         string
	backend, admin, stranger string
	worker                   string // a superuser standing in for pg_cron's job worker
	hashes                   []int64
	bigHash                  int64
	localHash                int64 // a statement of the database itself, with a captured plan and no index
}

func environment(t *testing.T) setup {
	need := func(name string) string {
		value := os.Getenv(name)
		if value == "" {
			t.Fatalf("%s is not set: run through tests/python/test_go_driver.py", name)
		}
		return value
	}
	s := setup{
		doc: need("PGML_DOC"), dsn: need("PGML_DSN"), server: need("PGML_SERVER"),
		backend: need("PGML_BACKEND_ROLE"), admin: need("PGML_ADMIN_ROLE"),
		stranger: need("PGML_STRANGER_ROLE"), worker: need("PGML_WORKER_ROLE"),
	}
	for _, text := range strings.Split(need("PGML_QUERY_HASHES"), ",") {
		s.hashes = append(s.hashes, parseInt64(t, text))
	}
	s.bigHash = parseInt64(t, need("PGML_BIG_QUERY_HASH"))
	s.localHash = parseInt64(t, need("PGML_LOCAL_QUERY_HASH"))
	return s
}

func parseInt64(t *testing.T, text string) int64 {
	value, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return value
}

func connect(t *testing.T, s setup, role string) *sql.DB {
	db, err := sql.Open("postgres", s.dsn+" user="+role)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	return db
}

// contract runs the doc's statements by name ("name" or "name@case") and records which answered.
type contract struct {
	t          *testing.T
	statements map[string]string
	answered   map[string]bool
}

func (c *contract) sql(call string) string {
	c.t.Helper()
	name, _, _ := strings.Cut(call, "@")
	statement, ok := c.statements[name]
	if !ok {
		c.t.Fatalf("%s: the doc has no statement %q", call, name)
	}
	return statement
}

type column struct{ name, dbType string }

// rows runs a call that must succeed, checks the names and types of its columns, and returns its rows.
func (c *contract) rows(db *sql.DB, call string, want []column, args ...any) *sql.Rows {
	c.t.Helper()
	rows, err := db.Query(c.sql(call), args...)
	if err != nil {
		c.t.Fatalf("%s: %v", call, err)
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		c.t.Fatal(err)
	}
	var got []column
	for _, ct := range types {
		got = append(got, column{ct.Name(), ct.DatabaseTypeName()})
	}
	if !equalColumns(got, want) {
		c.t.Fatalf("%s: columns %v, want %v", call, got, want)
	}
	name, _, _ := strings.Cut(call, "@")
	c.answered[name] = true
	return rows
}

func equalColumns(a, b []column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// one scans the single row of a call.
func (c *contract) one(db *sql.DB, call string, want []column, dest []any, args ...any) {
	c.t.Helper()
	rows := c.rows(db, call, want, args...)
	defer rows.Close()
	if !rows.Next() {
		c.t.Fatalf("%s: no row (%v)", call, rows.Err())
	}
	if err := rows.Scan(dest...); err != nil {
		c.t.Fatalf("%s: %v", call, err)
	}
	if rows.Next() {
		c.t.Fatalf("%s: more than one row", call)
	}
}

// document scans the single jsonb value of a call and decodes it strictly into v.
func (c *contract) document(db *sql.DB, call, name string, v any, args ...any) {
	c.t.Helper()
	var doc []byte
	c.one(db, call, []column{{name, "JSONB"}}, []any{&doc}, args...)
	if err := decodeStrict(doc, v); err != nil {
		c.t.Fatalf("%s: %v in %s", call, err, doc)
	}
}

// fails runs a call that must fail with the SQLSTATE, branching on *pq.Error as the doc says.
// Errors pganalytics_ml raises carry a hint; those PostgreSQL raises (22P02, 42501) may not.
func (c *contract) fails(db *sql.DB, call, sqlstate string, args ...any) {
	c.t.Helper()
	rows, err := db.Query(c.sql(call), args...)
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
	}
	if got := SQLState(err); got != sqlstate {
		c.t.Fatalf("%s: SQLSTATE %q (%v), want %s", call, got, err, sqlstate)
	}
	if hint := pqHint(err); sqlstate != "22P02" && sqlstate != "42501" && hint == "" {
		c.t.Fatalf("%s: %v has no hint", call, err)
	}
}

func count(t *testing.T, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func recent(t *testing.T, what string, at time.Time) {
	t.Helper()
	if age := time.Since(at); at.IsZero() || age < -time.Minute || age > time.Hour {
		t.Fatalf("%s = %v: not an instant of this run", what, at)
	}
}

func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// rounded is x to the digits pgml_validate shows people (its JSON keeps every digit).
func rounded(x float64, digits int) float64 {
	scale := math.Pow(10, float64(digits))
	return math.Round(x*scale) / scale
}

var (
	jobColumns = []column{
		{"job_id", "TEXT"}, {"kind", "TEXT"}, {"status", "TEXT"}, {"created_at", "TIMESTAMPTZ"},
		{"updated_at", "TIMESTAMPTZ"}, {"started_at", "TIMESTAMPTZ"}, {"completed_at", "TIMESTAMPTZ"},
		{"attempts", "INT4"}, {"max_attempts", "INT4"}, {"error", "TEXT"}, {"result", "JSONB"},
		{"progress", "JSONB"}, {"dead_lettered", "BOOL"},
	}
	trainColumns = []column{
		{"model_id", "INT8"}, {"model_type", "TEXT"}, {"server_id", "TEXT"}, {"r_squared", "FLOAT8"},
		{"rmse", "FLOAT8"}, {"mae", "FLOAT8"}, {"training_samples", "INT4"}, {"holdout_samples", "INT4"},
		{"q_error_p50", "FLOAT8"}, {"q_error_p90", "FLOAT8"}, {"interval_coverage", "FLOAT8"}, {"activated", "BOOL"},
	}
	predictionColumns = []column{
		{"prediction_id", "INT8"}, {"query_hash", "INT8"}, {"predicted_execution_time_ms", "FLOAT8"},
		{"lower_bound_ms", "FLOAT8"}, {"upper_bound_ms", "FLOAT8"}, {"confidence", "FLOAT8"},
		{"model_id", "INT8"}, {"model_version", "INT4"}, {"source", "TEXT"},
	}
	validateColumns = []column{
		{"prediction_id", "INT8"}, {"query_hash", "INT8"}, {"predicted_execution_time_ms", "FLOAT8"},
		{"actual_execution_time_ms", "FLOAT8"}, {"error_percent", "FLOAT8"}, {"accuracy_score", "FLOAT8"},
		{"within_confidence_interval", "BOOL"}, {"validated_at", "TIMESTAMPTZ"},
	}
	activateColumns = []column{
		{"model_id", "INT8"}, {"server_id", "TEXT"}, {"model_type", "TEXT"}, {"version", "INT4"},
		{"is_active", "BOOL"}, {"activated_at", "TIMESTAMPTZ"},
	}
	modelColumns = []column{
		{"model_id", "INT8"}, {"server_id", "TEXT"}, {"model_type", "TEXT"}, {"version", "INT4"},
		{"created_at", "TIMESTAMPTZ"}, {"is_active", "BOOL"}, {"activated_at", "TIMESTAMPTZ"},
		{"training_samples", "INT4"}, {"r_squared", "FLOAT8"}, {"rmse", "FLOAT8"}, {"mae", "FLOAT8"},
		{"q_error_p50", "FLOAT8"}, {"q_error_p90", "FLOAT8"}, {"interval_coverage", "FLOAT8"},
	}
)

func (c *contract) jobStatus(db *sql.DB, jobID string) TrainingStatus {
	c.t.Helper()
	var s TrainingStatus
	var errText sql.NullString
	var result, progress []byte
	c.one(db, "job_status", jobColumns, []any{
		&s.JobID, &s.Kind, &s.Status, &s.CreatedAt, &s.UpdatedAt, &s.StartedAt, &s.CompletedAt,
		&s.Attempts, &s.MaxAttempts, &errText, &result, &progress, &s.DeadLettered,
	}, jobID)
	s.Error = nullString(errText)
	if progress != nil {
		s.Progress = &JobProgress{}
		if err := decodeStrict(progress, s.Progress); err != nil {
			c.t.Fatalf("job_status progress: %v in %s", err, progress)
		}
	}
	if result != nil {
		s.Result = &TrainingResult{}
		if err := decodeStrict(result, s.Result); err != nil {
			c.t.Fatalf("job_status result: %v in %s", err, result)
		}
		s.ModelID, s.RSquared = s.Result.ModelID, s.Result.RSquared
		s.TrainingSamples, s.FeatureImportance = s.Result.TrainingSamples, s.Result.FeatureImportance
	}
	return s
}

func (c *contract) models(db *sql.DB, server any) []Model {
	c.t.Helper()
	rows := c.rows(db, "models", modelColumns, server)
	defer rows.Close()
	var models []Model
	for rows.Next() {
		var m Model
		if err := rows.Scan(&m.ModelID, &m.ServerID, &m.ModelType, &m.Version, &m.CreatedAt, &m.IsActive,
			&m.ActivatedAt, &m.TrainingSamples, &m.RSquared, &m.RMSE, &m.MAE, &m.QErrorP50, &m.QErrorP90,
			&m.IntervalCoverage); err != nil {
			c.t.Fatal(err)
		}
		models = append(models, m)
	}
	if err := rows.Err(); err != nil {
		c.t.Fatal(err)
	}
	return models
}

func scanPredictions(t *testing.T, rows *sql.Rows) []PredictionRow {
	t.Helper()
	defer rows.Close()
	var out []PredictionRow
	for rows.Next() {
		var p PredictionRow
		if err := rows.Scan(&p.PredictionID, &p.QueryHash, &p.PredictedExecutionTimeMs, &p.LowerBoundMs,
			&p.UpperBoundMs, &p.Confidence, &p.ModelID, &p.ModelVersion, &p.Source, &p.At); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestContract(t *testing.T) {
	s := environment(t)
	statements, order, err := Statements(s.doc)
	if err != nil {
		t.Fatal(err)
	}
	var unknown []string
	for _, name := range order {
		if !exercised[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		t.Fatalf("documented but unknown to the Go test: %v (add them to tests/go/contract_test.go)", unknown)
	}
	c := &contract{t: t, statements: statements, answered: map[string]bool{}}
	backend, admin := connect(t, s, s.backend), connect(t, s, s.admin)
	stranger, worker := connect(t, s, s.stranger), connect(t, s, s.worker)
	predictions := func() int64 { return count(t, worker, "SELECT count(*) FROM pganalytics_ml.predictions") }

	// The collector's push: queryid as a JSON string, which no encoder rounds.
	const collector = "db-collector"
	capturedAt := time.Date(2026, 11, 28, 17, 0, 0, 0, time.UTC)
	type statRow struct {
		QueryID       int64   `json:"queryid,string"`
		Calls         int64   `json:"calls"`
		TotalExecTime float64 `json:"total_exec_time"`
	}
	payload, _ := json.Marshal(map[string]any{
		"captured_at": capturedAt, "rows": []statRow{{QueryID: s.bigHash, Calls: 10, TotalExecTime: 52.5}},
	})
	var ingested int32
	c.one(backend, "ingest", []column{{"rows_ingested", "INT4"}}, []any{&ingested}, collector, string(payload))
	if ingested != 1 {
		t.Fatalf("ingest: %d rows, want 1", ingested)
	}
	c.fails(backend, "ingest@bad-row", "22023", collector, `{"rows": [{"queryid": 1}]}`)
	c.fails(backend, "ingest@not-json", "22P02", collector, "{")
	c.fails(backend, "ingest@null", "22004", nil, string(payload))

	var status ServiceStatus
	c.document(backend, "status", "status", &status)
	if status.Service != "pganalytics_ml" || !status.DatabaseConnected || !status.PgStatStatements.Loaded {
		t.Fatalf("status: %+v", status)
	}
	if status.Status != "healthy" && status.Status != "degraded" {
		t.Fatalf("status.status = %q", status.Status)
	}
	recent(t, "status.checked_at", status.CheckedAt)
	servers := map[string]int64{}
	for _, server := range status.Servers {
		servers[server.ServerID] = server.Statements
		if server.ServerID == collector && (server.LastSnapshotAt == nil || !server.LastSnapshotAt.Equal(capturedAt)) {
			t.Fatalf("status: %s last snapshot %v, want %v", collector, server.LastSnapshotAt, capturedAt)
		}
	}
	if servers[collector] != 1 || servers[s.server] != int64(len(s.hashes)) {
		t.Fatalf("status.servers: %v, want %s: %d and %s: 1", servers, s.server, len(s.hashes), collector)
	}
	c.fails(stranger, "status@no-grant", "42501")
	c.fails(stranger, "models@no-grant", "42501", nil)

	// Train in a job, as the old 202 + job_id did; pg_cron's worker runs it.
	var queued TrainingJob
	c.one(backend, "train_async", []column{{"job_id", "TEXT"}, {"status", "TEXT"}, {"created_at", "TIMESTAMPTZ"}},
		[]any{&queued.JobID, &queued.Status, &queued.CreatedAt}, 30, "linear_regression", s.server)
	if queued.Status != "pending" || len(queued.JobID) != 36 {
		t.Fatalf("train_async: %+v", queued)
	}
	recent(t, "train_async.created_at", queued.CreatedAt)
	c.fails(backend, "train_async@bad-lookback", "22023", 0, "linear_regression", s.server)
	c.fails(backend, "train_async@null", "22004", nil, "linear_regression", s.server)
	c.fails(backend, "train_async@never-captured", "P0002", 30, "linear_regression", "db-unknown")
	c.fails(backend, "job_status@unknown", "P0002", "no-such-job")
	c.fails(backend, "job_status@null", "22004", nil)
	if n := count(t, worker, "SELECT count(*) FROM pganalytics_ml.jobs"); n != 1 {
		t.Fatalf("%d jobs queued, want 1: a failed call queued one", n)
	}

	pending := c.jobStatus(backend, queued.JobID)
	if pending.Status != "pending" || pending.Kind != "train" || pending.Attempts != 0 || pending.StartedAt != nil ||
		pending.CompletedAt != nil || pending.Result != nil || pending.Error != nil || pending.DeadLettered {
		t.Fatalf("job_status before the worker ran: %+v", pending)
	}
	if _, err := worker.Exec("CALL pganalytics_ml.run_jobs()"); err != nil {
		t.Fatal(err)
	}
	done := c.jobStatus(backend, queued.JobID)
	if done.Status != "completed" || done.Attempts != 1 || done.Error != nil || done.CompletedAt == nil ||
		done.StartedAt == nil || done.Result == nil || done.Progress == nil || done.Progress.Percent != 100 {
		t.Fatalf("job_status after the worker ran: %+v", done)
	}
	recent(t, "job_status.completed_at", *done.CompletedAt)
	firstModel := done.ModelID
	if firstModel <= 0 || done.Result.ModelType != "linear_regression" || done.Result.ServerID != s.server ||
		!done.Result.Activated || done.TrainingSamples <= 0 || len(done.FeatureImportance) == 0 {
		t.Fatalf("training result: %+v", done.Result)
	}
	if done.Result.QErrorP50 < 1 || done.Result.QErrorP50 > done.Result.QErrorP90 {
		t.Fatalf("training result q-errors: %+v", done.Result)
	}

	// Train in the request.
	var trained TrainingResult
	c.one(backend, "train", trainColumns, []any{&trained.ModelID, &trained.ModelType, &trained.ServerID,
		&trained.RSquared, &trained.RMSE, &trained.MAE, &trained.TrainingSamples, &trained.HoldoutSamples,
		&trained.QErrorP50, &trained.QErrorP90, &trained.IntervalCoverage, &trained.Activated},
		90, "decision_tree", s.server)
	if trained.ModelID <= firstModel || trained.ModelType != "decision_tree" || trained.TrainingSamples <= 0 {
		t.Fatalf("train: %+v", trained)
	}
	c.fails(backend, "train@unknown-type", "22023", 90, "neural_net", s.server)
	c.fails(backend, "train@never-captured", "P0002", 90, "linear_regression", "db-unknown")
	c.fails(backend, "train@too-little-history", "P0002", 90, "linear_regression", collector)
	c.fails(backend, "train@null", "22004", 90, nil, s.server)
	// A request cancelled while it trains (context deadline, statement_timeout): 57014, nothing written.
	stored := count(t, worker, "SELECT count(*) FROM pganalytics_ml.models")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	rows, err := backend.QueryContext(ctx, c.sql("train@cancelled"), 90, "auto", s.server)
	cancel()
	if err == nil {
		rows.Close()
	}
	if SQLState(err) != "57014" {
		t.Fatalf("train@cancelled: %v, want SQLSTATE 57014", err)
	}
	if n := count(t, worker, "SELECT count(*) FROM pganalytics_ml.models"); n != stored {
		t.Fatalf("train@cancelled stored %d models", n-stored)
	}

	models := c.models(backend, s.server)
	if len(models) != 2 || models[0].ModelID != trained.ModelID || models[1].ModelID != firstModel {
		t.Fatalf("models, newest first: %+v", models)
	}
	active, inactive := models[0], models[1]
	if !active.IsActive {
		active, inactive = inactive, active
	}
	if !active.IsActive || inactive.IsActive || active.ActivatedAt == nil || active.Version < 1 {
		t.Fatalf("models: one active, one not: %+v", models)
	}

	// Predict: the JSON document, query_hash a negative int64 beyond 2**53.
	before := predictions()
	var doc PerformancePrediction
	c.document(backend, "predict", "prediction", &doc, s.bigHash, s.server)
	if doc.QueryHash != s.bigHash || doc.QueryHashText != strconv.FormatInt(s.bigHash, 10) {
		t.Fatalf("predict: query_hash %d (%q), want %d", doc.QueryHash, doc.QueryHashText, s.bigHash)
	}
	if doc.Source != "model" || doc.ModelID == nil || *doc.ModelID != active.ModelID || doc.ModelVersion == nil ||
		*doc.ModelVersion != active.Version || doc.PredictionID == nil || !doc.Logged || doc.ServerID != s.server {
		t.Fatalf("predict: %+v, want the active model %+v", doc, active)
	}
	if !(0 < doc.Range.Min && doc.Range.Min <= doc.PredictedExecutionTimeMs && doc.PredictedExecutionTimeMs <= doc.Range.Max) ||
		doc.Confidence < 0 || doc.Confidence > 1 {
		t.Fatalf("predict: range %+v around %v, confidence %v", doc.Range, doc.PredictedExecutionTimeMs, doc.Confidence)
	}
	recent(t, "predict.timestamp", doc.Timestamp)
	c.fails(backend, "predict@unknown", "P0002", int64(12345), s.server)
	c.fails(backend, "predict@not-an-integer", "22P02", "12abc", s.server)
	c.fails(backend, "predict@null", "22004", nil, s.server)

	var row PredictionRow
	c.one(backend, "predict_row", append(predictionColumns, column{"predicted_at", "TIMESTAMPTZ"}), []any{
		&row.PredictionID, &row.QueryHash, &row.PredictedExecutionTimeMs, &row.LowerBoundMs, &row.UpperBoundMs,
		&row.Confidence, &row.ModelID, &row.ModelVersion, &row.Source, &row.At,
	}, s.bigHash, s.server)
	if row.QueryHash != s.bigHash || row.PredictionID == nil || *row.PredictionID != *doc.PredictionID+1 ||
		row.PredictedExecutionTimeMs != doc.PredictedExecutionTimeMs || row.LowerBoundMs != doc.Range.Min ||
		row.UpperBoundMs != doc.Range.Max || *row.ModelID != *doc.ModelID || row.Source != "model" {
		t.Fatalf("predict_row %+v disagrees with predict %+v", row, doc)
	}
	c.whatIf(backend, s)
	recent(t, "predict_row.predicted_at", row.At)
	c.fails(backend, "predict_row@unknown", "P0002", int64(12345), s.server)
	c.fails(backend, "predict_row@not-an-integer", "22P02", "12abc", s.server)

	allColumns := append(append([]column{}, predictionColumns...), column{"based_on", "TIMESTAMPTZ"})
	every := scanPredictions(t, c.rows(backend, "predict_all", allColumns, s.server, false))
	var hashes, want []int64
	for _, p := range every {
		hashes = append(hashes, p.QueryHash)
		if p.PredictionID != nil || p.Source != "model" || p.ModelID == nil || *p.ModelID != active.ModelID {
			t.Fatalf("predict_all unlogged: %+v", p)
		}
	}
	want = append(want, s.hashes...)
	sort.Slice(hashes, func(i, j int) bool { return hashes[i] < hashes[j] })
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
	if len(hashes) != len(want) || !equalInt64s(hashes, want) {
		t.Fatalf("predict_all: statements %v, want %v", hashes, want)
	}
	logged := scanPredictions(t, c.rows(backend, "predict_all@logged", allColumns, s.server, true))
	for _, p := range logged {
		if p.PredictionID == nil {
			t.Fatalf("predict_all logged: %+v", p)
		}
	}
	c.fails(backend, "predict_all@null", "22004", nil, false)
	// whatIf logs two: "current" and the local statement's plain predict; "optimized" is never logged.
	if got := predictions() - before; got != int64(4+len(s.hashes)) {
		t.Fatalf("%d predictions logged, want %d: predict, predict_row, whatIf, predict_all; the failed calls none",
			got, 4+len(s.hashes))
	}

	// Validate the logged prediction against a measured time.
	const actual = 11.0
	v := ValidationResult{Message: "validated"}
	c.one(backend, "validate", validateColumns, []any{&v.PredictionID, &v.QueryHash, &v.PredictedExecutionTimeMs,
		&v.ActualExecutionTimeMs, &v.ErrorPercent, &v.AccuracyScore, &v.WithinConfidenceInterval, &v.Timestamp},
		*doc.PredictionID, actual)
	predicted := doc.PredictedExecutionTimeMs
	if v.PredictionID != *doc.PredictionID || v.QueryHash != s.bigHash || v.ActualExecutionTimeMs != actual ||
		!approx(v.ErrorPercent, rounded(math.Abs(predicted-actual)/actual*100, 2)) ||
		!approx(v.AccuracyScore, rounded(math.Max(0, 1-math.Abs(predicted-actual)/actual), 4)) ||
		v.WithinConfidenceInterval != (doc.Range.Min <= actual && actual <= doc.Range.Max) {
		t.Fatalf("validate: %+v for predicted %v", v, predicted)
	}
	recent(t, "validate.validated_at", v.Timestamp)
	c.fails(backend, "validate@not-positive", "22023", *doc.PredictionID, -3.0)
	c.fails(backend, "validate@unknown", "P0002", *doc.PredictionID+1000, 3.5)
	c.fails(backend, "validate@null", "22004", nil, 3.5)

	// Activation: an administrator's act.
	c.fails(backend, "activate@not-admin", "42501", inactive.ModelID)
	var activated Model
	c.one(admin, "activate", activateColumns, []any{&activated.ModelID, &activated.ServerID, &activated.ModelType,
		&activated.Version, &activated.IsActive, &activated.ActivatedAt}, inactive.ModelID)
	if activated.ModelID != inactive.ModelID || !activated.IsActive || activated.ActivatedAt == nil {
		t.Fatalf("activate: %+v", activated)
	}
	recent(t, "activate.activated_at", *activated.ActivatedAt)
	c.fails(admin, "activate@unknown", "P0002", trained.ModelID+1000)
	c.fails(admin, "activate@null", "22004", nil)
	for _, m := range c.models(admin, nil) {
		if m.IsActive != (m.ModelID == inactive.ModelID) && m.ServerID == s.server {
			t.Fatalf("after activate: %+v", m)
		}
	}
	c.document(backend, "predict@after-activate", "prediction", &doc, s.bigHash, s.server)
	if *doc.ModelID != inactive.ModelID {
		t.Fatalf("predict after activate answered from model %d, want %d", *doc.ModelID, inactive.ModelID)
	}
	// A model whose bytes were changed outside pganalytics_ml is refused.
	if _, err := worker.Exec("UPDATE pganalytics_ml.models SET model = model || '\\x00'::bytea WHERE model_id = $1",
		active.ModelID); err != nil {
		t.Fatal(err)
	}
	c.fails(admin, "activate@tampered", "XX001", active.ModelID)

	// Workload patterns: join the run when the doc has them.
	if _, ok := statements["detect_patterns"]; ok {
		c.workloadPatterns(backend, worker, s.server)
	}

	var unanswered []string
	for _, name := range order {
		if !c.answered[name] {
			unanswered = append(unanswered, name)
		}
	}
	if len(unanswered) > 0 {
		t.Fatalf("documented but not run through Go: %v (add them to tests/go/contract_test.go)", unanswered)
	}
	for name := range exercised {
		if _, ok := statements[name]; !ok {
			t.Logf("%s: not in the doc yet, not run", name)
		}
	}
	t.Logf("ran %d documented statements through lib/pq: %v", len(order), order)
}

func (c *contract) workloadPatterns(backend, worker *sql.DB, server string) {
	t := c.t
	var detected WorkloadPatterns
	c.document(backend, "detect_patterns", "patterns", &detected, int32(1), server)
	if detected.PatternsDetected != len(detected.Patterns) || detected.ServerID != server || detected.LookbackDays != 1 {
		t.Fatalf("detect_patterns: %+v", detected)
	}
	for _, p := range detected.Patterns {
		if p.Type == "" || p.Description == "" || p.Metric == "" || p.Confidence < 0 || p.Confidence > 1 {
			t.Fatalf("detect_patterns: %+v", p)
		}
	}
	recent(t, "detect_patterns.timestamp", detected.Timestamp)
	c.fails(backend, "detect_patterns@bad-lookback", "22023", int32(0), server)
	c.fails(backend, "detect_patterns@null", "22004", nil, server)
	c.fails(backend, "detect_patterns@never-captured", "P0002", int32(1), "db-unknown")
	if _, ok := c.statements["patterns"]; !ok {
		return
	}
	// What the hourly patterns job stores (pg_cron's worker runs it).
	if _, err := worker.Exec(`SELECT job_id FROM pgml_job_enqueue('patterns', '{"lookback_days": 1}')`); err != nil {
		t.Fatal(err)
	}
	if _, err := worker.Exec("CALL pganalytics_ml.run_jobs()"); err != nil {
		t.Fatal(err)
	}
	rows := c.rows(backend, "patterns", []column{{"type", "TEXT"}, {"query_hash", "INT8"}, {"metric", "TEXT"},
		{"description", "TEXT"}, {"confidence", "FLOAT8"}, {"metadata", "JSONB"}, {"detected_at", "TIMESTAMPTZ"}},
		server)
	defer rows.Close()
	var stored, wanted []string
	for rows.Next() {
		var p StoredPattern
		var metadata []byte
		if err := rows.Scan(&p.Type, &p.QueryHash, &p.Metric, &p.Description, &p.Confidence, &metadata,
			&p.DetectedAt); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(metadata, &p.Metadata); err != nil {
			t.Fatalf("patterns metadata: %v in %s", err, metadata)
		}
		stored = append(stored, p.Description)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, p := range detected.Patterns {
		wanted = append(wanted, p.Description)
	}
	sort.Strings(stored)
	sort.Strings(wanted)
	if strings.Join(stored, "\n") != strings.Join(wanted, "\n") {
		t.Fatalf("stored patterns %q, detected %q", stored, wanted)
	}
}

func equalInt64s(a, b []int64) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// whatIf runs the scenario the Go backend sends: "current" is predict; "optimized" finds the missing index.
func (c *contract) whatIf(backend *sql.DB, s setup) {
	t := c.t
	var current PerformancePrediction
	c.document(backend, "predict_scenario", "prediction", &current, s.bigHash, s.server, "current")
	if !current.Logged || current.PredictionID == nil || current.Scenario["scenario"] != "current" ||
		len(current.RecommendedIndexes) != 0 || current.OptimizationSuggestion != nil {
		t.Fatalf("predict_scenario current: %+v", current)
	}
	var optimized PerformancePrediction
	c.document(backend, "predict_scenario", "prediction", &optimized, s.localHash, "local", "optimized")
	if optimized.Logged || optimized.PredictionID != nil || optimized.Scenario["scenario"] != "optimized" ||
		len(optimized.RecommendedIndexes) != 1 || optimized.OptimizationSuggestion == nil {
		t.Fatalf("predict_scenario optimized: %+v", optimized)
	}
	if want := "CREATE INDEX ON public.go_orders (customer_id)"; optimized.RecommendedIndexes[0] != want {
		t.Fatalf("predict_scenario optimized: %v, want [%s]", optimized.RecommendedIndexes, want)
	}
	var plain PerformancePrediction
	c.document(backend, "predict", "prediction", &plain, s.localHash, "local")
	if !(optimized.PredictedExecutionTimeMs < plain.PredictedExecutionTimeMs) ||
		!strings.Contains(*optimized.OptimizationSuggestion, "go_orders") {
		t.Fatalf("predict_scenario optimized %+v is not faster than %+v", optimized, plain)
	}
	c.fails(backend, "predict_scenario@remote-indexes", "0A000", s.bigHash, s.server, "optimized")
	c.fails(backend, "predict_scenario@unknown", "22023", s.bigHash, s.server, "faster")
	c.fails(backend, "predict_scenario@null", "22004", nil, s.server, "current")
}
