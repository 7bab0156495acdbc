// Preloaded into the runner (NODE_OPTIONS in this image's Dockerfile) before its own code runs.
// By the job's prompt:
//   FAULT:crash  exit 3 at once, no callback (the manager sees a failed container: RunnerFailed)
//   FAULT:oom    the runner process itself allocates until the kernel's cgroup OOM killer ends
//                it (the container's main process is the victim: OOMKilled)
//   FAULT:hang   never start, never end (only activeDeadlineSeconds ends the pod)
// Only the runner's own process: the agent's commands never see NODE_OPTIONS (codex gives them
// a clean environment), and other node processes carry no PAGEWRIGHT_JOB.
let prompt = '';
try {
  prompt = JSON.parse(process.env.PAGEWRIGHT_JOB ?? '{}').prompt ?? '';
} catch {
  // not a runner
}
const fault = /^FAULT:(crash|oom|hang)\b/.exec(prompt)?.[1];
if (fault === 'crash') process.exit(3);
if (fault === 'oom') {
  const keep = [];
  for (;;) keep.push(Buffer.alloc(64 * 1024 * 1024, 1));
}
if (fault === 'hang') {
  setInterval(() => {}, 1 << 30); // a pending timer: an empty event loop would end the process
  await new Promise(() => {});
}
