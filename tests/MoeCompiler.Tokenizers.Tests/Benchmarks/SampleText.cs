using System.Text;

namespace MoeCompiler.Tokenizers.Tests.Benchmarks;

/// <summary>Deterministic large texts for throughput runs: English-like prose from a word list, and Chinese
/// sentences from common characters (long letter runs, so the splitter gives sentence-long pieces).</summary>
internal static class SampleText
{
    private static readonly string[] Words = (
        "the of and to in is was that for it with as his on be at by had are but from or have an they which one you were " +
        "her all she there would their we him been has when who will more no if out so said what up its about into than them " +
        "can only other new some could time these two may then do first any my now such like our over man me even most made " +
        "after also did many before must through back years where much your way well down should because each just those people " +
        "image model expert router token vision language mixture sparse attention layer weights training inference benchmark " +
        "photograph describe question answer colour animal building street children playing table window sunlight mountain river")
        .Split(' ');

    private const string Hanzi = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持音落";

    public static string English(int approximateBytes, int seed = 7)
    {
        var random = new Random(seed);
        var builder = new StringBuilder(approximateBytes + 100);
        while (builder.Length < approximateBytes)
        {
            int words = random.Next(6, 22);
            for (int w = 0; w < words; w++)
            {
                string word = Words[random.Next(Words.Length)];
                if (w == 0) word = char.ToUpperInvariant(word[0]) + word[1..];
                builder.Append(word);
                if (w < words - 1) builder.Append(random.Next(12) == 0 ? ", " : " ");
            }
            builder.Append(random.Next(5) switch { 0 => "? ", 1 => "!\n\n", _ => ". " });
            if (random.Next(20) == 0) builder.Append(random.Next(1000, 3000)).Append(" it's 42% of the user's data. ");
        }
        return builder.ToString();
    }

    public static string Chinese(int approximateBytes, int seed = 11)
    {
        var random = new Random(seed);
        var builder = new StringBuilder(approximateBytes / 3 + 100);
        while (builder.Length * 3 < approximateBytes) // three UTF-8 bytes per character
        {
            int length = random.Next(8, 40);
            for (int i = 0; i < length; i++) builder.Append(Hanzi[random.Next(Hanzi.Length)]);
            builder.Append(random.Next(4) == 0 ? "。\n" : "，");
        }
        return builder.ToString();
    }
}
