using System.Text;

namespace MoeCompiler.Generators.Tests;

/// <summary>
/// A small snapshot helper with Verify's file conventions: <c>Class.Method#HintName.verified.cs</c> per generated
/// file and <c>Class.Method.verified.txt</c> for diagnostics, under <c>Snapshots/</c> next to the tests. On a
/// mismatch the actual text is written to the matching <c>.received.*</c> file and the test fails; setting
/// <c>MOE_ACCEPT_SNAPSHOTS=1</c> accepts the received text (and deletes stale snapshots) instead.
/// </summary>
internal static class Snapshot
{
    public static bool Accepting => Environment.GetEnvironmentVariable("MOE_ACCEPT_SNAPSHOTS") == "1";

    /// <summary>The verified file name for a generated source: hint "X.g.cs" gives "Name#X.g.verified.cs".</summary>
    public static string SourceFileName(string snapshotName, string hintName) =>
        snapshotName + "#" + Path.GetFileNameWithoutExtension(hintName) + ".verified.cs";

    public static string TextFileName(string snapshotName) => snapshotName + ".verified.txt";

    public static void VerifySource(string snapshotName, string hintName, string actual) =>
        Verify(SourceFileName(snapshotName, hintName), actual);

    public static void VerifyText(string snapshotName, string actual) => Verify(TextFileName(snapshotName), actual);

    private static void Verify(string verifiedName, string actual)
    {
        actual = actual.Replace("\r\n", "\n");
        string verified = Path.Combine(RepoPaths.Snapshots, verifiedName);
        string received = Path.Combine(RepoPaths.Snapshots, verifiedName.Replace(".verified.", ".received.", StringComparison.Ordinal));
        string? expected = File.Exists(verified) ? File.ReadAllText(verified).Replace("\r\n", "\n") : null;
        if (expected == actual)
        {
            File.Delete(received);
            return;
        }

        Directory.CreateDirectory(RepoPaths.Snapshots);
        if (Accepting)
        {
            File.WriteAllText(verified, actual, new UTF8Encoding(false));
            File.Delete(received);
            return;
        }

        File.WriteAllText(received, actual, new UTF8Encoding(false));
        string reason = expected is null ? "no verified snapshot exists" : FirstDifference(expected, actual);
        Assert.Fail($"Snapshot {verifiedName} does not match ({reason}). The actual text is in {received}; " +
                    "review it and run the tests with MOE_ACCEPT_SNAPSHOTS=1 to accept.");
    }

    private static string FirstDifference(string expected, string actual)
    {
        string[] e = expected.Split('\n'), a = actual.Split('\n');
        for (int i = 0; i < Math.Max(e.Length, a.Length); i++)
        {
            string el = i < e.Length ? e[i] : "<end of file>", al = i < a.Length ? a[i] : "<end of file>";
            if (el != al) return $"line {i + 1}: expected `{el.Trim()}`, got `{al.Trim()}`";
        }

        return "line endings";
    }

    /// <summary>Fails on verified files no test produces any more (accepting deletes them).</summary>
    public static void AssertNoStaleSnapshots(IReadOnlyCollection<string> expectedNames)
    {
        var stale = Directory.GetFiles(RepoPaths.Snapshots, "*.verified.*")
            .Select(Path.GetFileName)
            .Where(name => !expectedNames.Contains(name!))
            .OrderBy(name => name, StringComparer.Ordinal)
            .ToList();
        if (stale.Count == 0) return;
        if (Accepting)
        {
            foreach (var name in stale) File.Delete(Path.Combine(RepoPaths.Snapshots, name!));
            return;
        }

        Assert.Fail("Stale snapshots (no test produces them; delete them or run with MOE_ACCEPT_SNAPSHOTS=1): " + string.Join(", ", stale));
    }
}
