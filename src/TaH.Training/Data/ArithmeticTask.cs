using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TaH.Training.Data;

/// <summary>One addition problem: "What is 4821+3967?" answered "8788", most significant digit first.</summary>
public readonly record struct AdditionProblem(long A, long B)
{
    public long Sum => A + B;

    public string Question => string.Create(CultureInfo.InvariantCulture, $"What is {A}+{B}?");

    public string Answer => Sum.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// For each answer digit (most significant first): whether a carry arrives at its place from the
    /// digits to its right. Those digits cannot be written before the lower places are added up.
    /// </summary>
    public bool[] CarryIn()
    {
        var carries = new List<bool>();
        long a = A, b = B;
        int carry = 0;
        for (int place = 0; place < Answer.Length; place++)
        {
            carries.Add(carry == 1);
            carry = (int)((a % 10) + (b % 10) + carry) / 10;
            a /= 10;
            b /= 10;
        }

        carries.Reverse();
        return [.. carries];
    }

    public JsonObject ToChat() => new()
    {
        ["messages"] = new JsonArray(
            new JsonObject { ["role"] = "user", ["content"] = Question },
            new JsonObject { ["role"] = "assistant", ["content"] = Answer }),
    };

    /// <summary>Parses a question of this task back ("What is A+B?"), or null.</summary>
    public static AdditionProblem? Parse(string question)
    {
        const string Prefix = "What is ";
        if (!question.StartsWith(Prefix, StringComparison.Ordinal) || !question.EndsWith('?'))
        {
            return null;
        }

        string[] parts = question[Prefix.Length..^1].Split('+');
        return parts.Length == 2 && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long a)
            && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long b)
            ? new AdditionProblem(a, b) : null;
    }
}

/// <summary>Random addition problems: each operand gets a digit count drawn uniformly, then a uniform value.</summary>
public static class ArithmeticTask
{
    // "+" stays "+" in the files (the default encoder writes \u002B).
    private static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static List<AdditionProblem> Generate(int count, int seed, int minDigits, int maxDigits, IReadOnlySet<AdditionProblem>? exclude = null)
    {
        var random = new Random(seed);
        long Operand()
        {
            int digits = random.Next(minDigits, maxDigits + 1);
            long low = digits == 1 ? 0 : (long)Math.Pow(10, digits - 1);
            return random.NextInt64(low, (long)Math.Pow(10, digits));
        }

        var problems = new List<AdditionProblem>(count);
        int attempts = 0;
        while (problems.Count < count && attempts++ < count * 100)
        {
            var problem = new AdditionProblem(Operand(), Operand());
            if (exclude is null || !exclude.Contains(problem))
            {
                problems.Add(problem);
            }
        }

        return problems;
    }

    /// <summary>
    /// The demo's three disjoint splits: test problems (operands of at least three digits, where
    /// carries matter), validation problems not in the test set, and training problems in neither.
    /// </summary>
    public static (List<AdditionProblem> Train, List<AdditionProblem> Validation, List<AdditionProblem> Test) Splits(
        int train, int validation, int test, int minDigits, int maxDigits, int seed)
    {
        var testSet = Generate(test, seed + 1, Math.Min(Math.Max(minDigits, 3), maxDigits), maxDigits).Distinct().ToList();
        var validationSet = Generate(validation, seed + 2, minDigits, maxDigits, testSet.ToHashSet()).Distinct().ToList();
        var trainSet = Generate(train, seed, minDigits, maxDigits, testSet.Concat(validationSet).ToHashSet());
        return (trainSet, validationSet, testSet);
    }

    public static void WriteJsonl(string path, IEnumerable<AdditionProblem> problems)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllLines(path, problems.Select(p => p.ToChat().ToJsonString(Json)));
    }
}
