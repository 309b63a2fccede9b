// A user-facing error about bad input (a file, a row, a field, a flag): the message says where and what is
// expected. The CLI prints the message without a stack trace and exits non-zero.
namespace LmmR1.Infrastructure;

public class InputException : Exception
{
    public InputException(string message) : base(message) { }
    public InputException(string message, Exception inner) : base(message, inner) { }

    /// <summary>"file:line: field: message" with the parts that are known.</summary>
    public static InputException At(string? file, long? line, string? field, string message)
    {
        var where = new List<string>();
        if (file != null) where.Add(line is { } l ? $"{file}:{l}" : file);
        if (field != null) where.Add($"field '{field}'");
        return new InputException(where.Count == 0 ? message : $"{string.Join(": ", where)}: {message}");
    }
}
