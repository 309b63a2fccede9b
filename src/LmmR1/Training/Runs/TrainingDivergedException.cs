// The run stopped itself because training diverged (--max_nonfinite_steps skipped optimizer steps in a row). An
// InputException so the CLI prints `error: <message and what to try>` and exits non-zero without a stack trace.
using LmmR1.Infrastructure;

namespace LmmR1.Training.Runs;

public sealed class TrainingDivergedException(string message) : InputException(message);
