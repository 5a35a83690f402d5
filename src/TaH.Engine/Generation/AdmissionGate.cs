using TaH.Engine.Sampling;

namespace TaH.Engine.Generation;

/// <summary>A request the <see cref="AdmissionGate"/> accepted: the only form the engine runs.</summary>
public sealed class AdmittedRequest
{
    internal AdmittedRequest(GenerationRequest request) => Request = request;

    public GenerationRequest Request { get; }
}

/// <summary>
/// Every rule a <see cref="GenerationRequest"/> must meet to run on this engine, checked once,
/// here: the prompt, the output length against the context and the KV pool, the samples, the
/// policy, the sampling knobs, the stop ids and the structured output's constraint. A refusal is
/// an <see cref="InvalidRequestException"/> that names the field (messages quote it as
/// <c>'field'</c>, so a caller that spells it otherwise can say so). Immutable and thread-safe:
/// a server admits requests on its own threads.
/// </summary>
/// <remarks>A new request field gets its rule here, in <see cref="Admit"/>, with the field's name as the exception's Param.</remarks>
public sealed class AdmissionGate(ServedModel model)
{
    public ServedModel Model { get; } = model;

    public AdmittedRequest Admit(GenerationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        CheckSamples(request.N);
        if (Model.Supports(request.Policy) is { } problem)
        {
            throw new InvalidRequestException(problem, RequestFields.Policy);
        }

        CheckSampling(request.Sampling);
        CheckStopTokens(request.StopTokenIds);
        CheckConstraint(request);
        if (request.MaxTokens < 1)
        {
            throw new InvalidRequestException($"'{RequestFields.MaxTokens}' must be at least 1, got {request.MaxTokens}.", RequestFields.MaxTokens);
        }

        CheckPrompt(request.PromptTokens);
        CheckLength(request.PromptTokens.Count, request.MaxTokens, request.N);
        return new AdmittedRequest(request);
    }

    private void CheckSamples(int n)
    {
        if (n < 1 || n > Model.MaxSamples)
        {
            throw new InvalidRequestException($"'{RequestFields.N}' must be in [1, {Model.MaxSamples}], got {n}.", RequestFields.N);
        }
    }

    private static void CheckSampling(SamplingParams sampling)
    {
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException e) when (e.ParamName is { } name)
        {
            throw new InvalidRequestException(e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal), name);
        }
    }

    private void CheckStopTokens(IReadOnlyList<int> ids)
    {
        foreach (int id in ids)
        {
            if (id < 0 || id >= Model.VocabSize)
            {
                throw new InvalidRequestException($"'{RequestFields.StopTokenIds}' has {id}, outside the vocabulary (0..{Model.VocabSize - 1}).", RequestFields.StopTokenIds);
            }
        }
    }

    /// <summary>A constraint masks this model's logits, and ends its output with an EOS or stop token, so it needs both.</summary>
    private void CheckConstraint(GenerationRequest request)
    {
        if (request.Constraint is not { } constraint)
        {
            return;
        }

        if (constraint.Vocabulary.Size != Model.VocabSize)
        {
            throw new InvalidRequestException(
                $"The structured output ('{RequestFields.ResponseFormat}') was compiled for a vocabulary of {constraint.Vocabulary.Size} logits, but this model has {Model.VocabSize}.",
                RequestFields.ResponseFormat);
        }

        if (Model.EosTokenIds.Count == 0 && request.StopTokenIds.Count == 0)
        {
            throw new InvalidRequestException(
                $"A structured output ('{RequestFields.ResponseFormat}') needs a token that ends it, but this model has no EOS token id; set '{RequestFields.StopTokenIds}'.",
                RequestFields.ResponseFormat);
        }
    }

    private void CheckPrompt(IReadOnlyList<int> tokens)
    {
        if (tokens.Count == 0)
        {
            throw new InvalidRequestException("The prompt is empty.", RequestFields.Prompt);
        }

        if (tokens.Count >= Model.MaxModelLength)
        {
            throw new InvalidRequestException(
                $"This model's maximum context length is {Model.MaxModelLength} tokens, but the prompt has {tokens.Count} tokens (at least one must remain for the output). Shorten the prompt.",
                RequestFields.Prompt, RequestFields.ContextLengthExceeded);
        }

        foreach (int t in tokens)
        {
            if (t < 0 || t >= Model.VocabSize)
            {
                throw new InvalidRequestException($"Prompt token id {t} is outside the vocabulary (0..{Model.VocabSize - 1}).", RequestFields.Prompt);
            }
        }
    }

    /// <summary>The context, then the KV pool, which the answer must fit alone at every depth; the refusal names what to change.</summary>
    private void CheckLength(int prompt, int maxTokens, int n)
    {
        if (prompt + maxTokens > Model.MaxModelLength)
        {
            throw new InvalidRequestException(
                $"This model's maximum context length is {Model.MaxModelLength} tokens. However, you requested {prompt + maxTokens} tokens ({prompt} in the prompt, {maxTokens} for the completion). Reduce the length of the prompt or '{RequestFields.MaxTokens}'.",
                RequestFields.MaxTokens, RequestFields.ContextLengthExceeded);
        }

        var kv = Model.Kv;
        if (kv.Fits(prompt, maxTokens, n))
        {
            return;
        }

        if (kv.MaxTokensFitting(prompt, 1) < 1)
        {
            throw new InvalidRequestException(
                $"The {prompt}-token prompt leaves no room for an answer in this server's KV cache ({kv.TotalBlocks} blocks of {kv.BlockSize} entries, shared by {kv.MaxDepth} depths). Shorten the prompt.",
                RequestFields.Prompt, RequestFields.KvCacheTooSmall);
        }

        if (kv.MaxTokensFitting(prompt, n) < 1)
        {
            throw new InvalidRequestException(
                $"'{RequestFields.N}' {n} samples of a {prompt}-token prompt need more KV cache than this server holds: at most {kv.MaxSamplesFitting(prompt)} fit. Lower '{RequestFields.N}'.",
                RequestFields.N, RequestFields.KvCacheTooSmall);
        }

        throw new InvalidRequestException(
            $"'{RequestFields.MaxTokens}' {maxTokens} with a {prompt}-token prompt{(n > 1 ? $" and {n} samples" : "")} needs more KV cache than this server holds (at most {kv.MaxTokensFitting(prompt, n)} tokens fit). Lower '{RequestFields.MaxTokens}'.",
            RequestFields.MaxTokens, RequestFields.KvCacheTooSmall);
    }
}
