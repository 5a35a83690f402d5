namespace TaH.Engine.Constraints;

public enum ConstraintError
{
    /// <summary>Valid, but uses something this engine cannot enforce (a keyword, a regex construct).</summary>
    Unsupported,

    /// <summary>Not a valid schema, regex or choice list.</summary>
    Invalid,

    /// <summary>Valid, but no output can satisfy it.</summary>
    Unsatisfiable,
}

/// <summary>
/// A constraint that cannot be compiled. <see cref="Keyword"/> names what is not supported
/// (a JSON Schema keyword, a regex construct) when <see cref="Error"/> is <see cref="ConstraintError.Unsupported"/>.
/// </summary>
public sealed class ConstraintException(string message, ConstraintError error = ConstraintError.Invalid, string? keyword = null) : Exception(message)
{
    public ConstraintError Error { get; } = error;

    public string? Keyword { get; } = keyword;

    public static ConstraintException Unsupported(string keyword, string message) => new(message, ConstraintError.Unsupported, keyword);
}
