// The wire statuses of a task, as get_result reports them: a copy of TaskStatus in src/openkontext/statuses.py
// (tests/playground/test_statuses.py keeps the two equal).

export const TaskStatus = Object.freeze({
  PENDING: "Pending",
  READY: "Ready",
  ERROR: "Error",
  REQUEST_MODERATED: "Request Moderated",
  CONTENT_MODERATED: "Content Moderated",
  CANCELLED: "Cancelled",
  TASK_NOT_FOUND: "Task not found",
});
