namespace TaH.Engine.Sampling;

/// <summary>A token and its log-probability under the model's raw distribution.</summary>
public readonly record struct TokenLogprob(int TokenId, float Logprob);

/// <summary>
/// The outcome of one <see cref="Sampler.Sample"/> call. Log-probabilities are the log-softmax of
/// the model's logits before penalties, temperature and filters (vLLM's default "raw logprobs"):
/// they describe what the model predicted, independent of the request's sampling knobs.
/// </summary>
/// <param name="TokenId">The chosen token.</param>
/// <param name="Logprob">Raw log-probability of the chosen token; always finite.</param>
/// <param name="TopLogprobs">
/// The <see cref="SamplingParams.Logprobs"/> most probable tokens, most probable first (ties: lower
/// id first); null when logprobs were not requested.
/// </param>
public readonly record struct SampledToken(int TokenId, float Logprob, TokenLogprob[]? TopLogprobs);
