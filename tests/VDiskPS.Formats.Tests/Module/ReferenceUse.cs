using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;

namespace VDiskPS.Formats.Tests.Module
{
    /// <summary>
    /// Which code of an assembly touches the types of given referenced assemblies: through a method's
    /// signature, its locals, a token in its IL, or its type's fields, base type and interfaces. The CLR
    /// loads a referenced assembly only when code that names one of its types is compiled or a type that
    /// holds one is loaded, so a reference that code never reaches is never resolved.
    /// </summary>
    public static class ReferenceUse
    {
        private static readonly Dictionary<short, OperandType> s_operands = typeof(OpCodes)
            .GetFields(BindingFlags.Public | BindingFlags.Static)
            .Select(f => (OpCode)f.GetValue(null))
            .ToDictionary(o => o.Value, o => o.OperandType);

        /// <summary>"Namespace.Type::Method" (or "Namespace.Type" for its fields and bases) of every definition that uses a type of <paramref name="assemblies"/>.</summary>
        public static HashSet<string> MethodsUsing(string dll, IEnumerable<string> assemblies)
        {
            using var stream = File.OpenRead(dll);
            using var pe = new PEReader(stream);
            var reader = pe.GetMetadataReader();
            var names = new HashSet<string>(assemblies, StringComparer.Ordinal);
            var provider = new UsesProvider(reader, names);
            var found = new HashSet<string>(StringComparer.Ordinal);
            foreach (var typeHandle in reader.TypeDefinitions)
            {
                var type = reader.GetTypeDefinition(typeHandle);
                string typeName = Name(reader, typeHandle);
                bool typeUses = (!type.BaseType.IsNil && provider.Uses(type.BaseType))
                    || type.GetInterfaceImplementations().Any(i => provider.Uses(reader.GetInterfaceImplementation(i).Interface))
                    || type.GetFields().Any(f => reader.GetFieldDefinition(f).DecodeSignature(provider, null));
                if (typeUses)
                {
                    found.Add(typeName);
                }

                foreach (var methodHandle in type.GetMethods())
                {
                    var method = reader.GetMethodDefinition(methodHandle);
                    var signature = method.DecodeSignature(provider, null);
                    bool uses = signature.ReturnType || signature.ParameterTypes.Any(p => p);
                    if (!uses && method.RelativeVirtualAddress != 0)
                    {
                        var body = pe.GetMethodBody(method.RelativeVirtualAddress);
                        uses = (!body.LocalSignature.IsNil && reader.GetStandaloneSignature(body.LocalSignature).DecodeLocalSignature(provider, null).Any(l => l))
                            || Tokens(body.GetILBytes()).Any(provider.Uses);
                    }

                    if (uses)
                    {
                        found.Add(typeName + "::" + reader.GetString(method.Name));
                    }
                }
            }

            return found;
        }

        /// <summary>
        /// The code of the assembly that running <paramref name="typeName"/> can reach: every method of
        /// every type of the assembly that its methods name (call, field, type token, base or declaring
        /// type), transitively, as "Namespace.Type::Method", plus those types as "Namespace.Type".
        /// </summary>
        public static HashSet<string> Reachable(string dll, string typeName)
        {
            using var stream = File.OpenRead(dll);
            using var pe = new PEReader(stream);
            var reader = pe.GetMetadataReader();
            var start = reader.TypeDefinitions.Single(t => Name(reader, t) == typeName);
            var seen = new HashSet<MethodDefinitionHandle>();
            var types = new HashSet<TypeDefinitionHandle>();
            var work = new Stack<MethodDefinitionHandle>();

            void AddType(TypeDefinitionHandle type)
            {
                if (!types.Add(type))
                {
                    return;
                }

                var definition = reader.GetTypeDefinition(type);
                // Every method of a type it reaches, not only those called: virtual and interface calls
                // (IChecksum.Update) land in methods that no token names.
                foreach (var m in definition.GetMethods())
                {
                    work.Push(m);
                }

                if (!definition.BaseType.IsNil && definition.BaseType.Kind == HandleKind.TypeDefinition)
                {
                    AddType((TypeDefinitionHandle)definition.BaseType);
                }

                if (!definition.GetDeclaringType().IsNil)
                {
                    AddType(definition.GetDeclaringType());
                }
            }

            AddType(start);

            while (work.Count > 0)
            {
                var handle = work.Pop();
                if (!seen.Add(handle))
                {
                    continue;
                }

                var method = reader.GetMethodDefinition(handle);
                AddType(method.GetDeclaringType());
                if (method.RelativeVirtualAddress == 0)
                {
                    continue;
                }

                foreach (var token in Tokens(pe.GetMethodBody(method.RelativeVirtualAddress).GetILBytes()))
                {
                    switch (token.Kind)
                    {
                        case HandleKind.MethodDefinition:
                            work.Push((MethodDefinitionHandle)token);
                            break;
                        case HandleKind.MethodSpecification when reader.GetMethodSpecification((MethodSpecificationHandle)token).Method.Kind == HandleKind.MethodDefinition:
                            work.Push((MethodDefinitionHandle)reader.GetMethodSpecification((MethodSpecificationHandle)token).Method);
                            break;
                        case HandleKind.FieldDefinition:
                            AddType(reader.GetFieldDefinition((FieldDefinitionHandle)token).GetDeclaringType());
                            break;
                        case HandleKind.TypeDefinition:
                            AddType((TypeDefinitionHandle)token);
                            break;
                    }
                }
            }

            var result = new HashSet<string>(types.Select(t => Name(reader, t)), StringComparer.Ordinal);
            foreach (var handle in seen)
            {
                var method = reader.GetMethodDefinition(handle);
                result.Add(Name(reader, method.GetDeclaringType()) + "::" + reader.GetString(method.Name));
            }

            return result;
        }

        /// <summary>The metadata tokens in a method body's IL.</summary>
        private static IEnumerable<EntityHandle> Tokens(byte[] il)
        {
            var tokens = new List<EntityHandle>();
            int at = 0;
            while (at < il.Length)
            {
                // Two-byte opcodes (0xFE xx) have the negative values OpCode.Value gives them.
                short code = il[at] == 0xFE ? unchecked((short)(0xFE00 | il[at + 1])) : il[at];
                at += il[at] == 0xFE ? 2 : 1;
                if (!s_operands.TryGetValue(code, out OperandType operand))
                {
                    throw new InvalidDataException($"unknown IL opcode 0x{code:x} at {at}");
                }

                switch (operand)
                {
                    case OperandType.InlineNone:
                        break;
                    case OperandType.ShortInlineBrTarget:
                    case OperandType.ShortInlineI:
                    case OperandType.ShortInlineVar:
                        at += 1;
                        break;
                    case OperandType.InlineVar:
                        at += 2;
                        break;
                    case OperandType.InlineI8:
                    case OperandType.InlineR:
                        at += 8;
                        break;
                    case OperandType.InlineSwitch:
                        at += 4 + (BitConverter.ToInt32(il, at) * 4);
                        break;
                    case OperandType.InlineField:
                    case OperandType.InlineMethod:
                    case OperandType.InlineTok:
                    case OperandType.InlineType:
                    case OperandType.InlineSig:
                        tokens.Add(MetadataTokens.EntityHandle(BitConverter.ToInt32(il, at)));
                        at += 4;
                        break;
                    default:
                        at += 4;
                        break;
                }
            }

            return tokens;
        }

        private static string Name(MetadataReader reader, TypeDefinitionHandle handle)
        {
            var type = reader.GetTypeDefinition(handle);
            string name = reader.GetString(type.Name);
            return type.GetDeclaringType().IsNil
                ? reader.GetString(type.Namespace) + "." + name
                : Name(reader, type.GetDeclaringType()) + "+" + name;
        }

        /// <summary>Decodes signatures to "names a type of one of the assemblies".</summary>
        private sealed class UsesProvider : ISignatureTypeProvider<bool, object>
        {
            private readonly MetadataReader _reader;
            private readonly HashSet<string> _assemblies;

            public UsesProvider(MetadataReader reader, HashSet<string> assemblies)
            {
                _reader = reader;
                _assemblies = assemblies;
            }

            /// <summary>Whether a token (type, member, method instance, signature) names a type of the assemblies.</summary>
            public bool Uses(EntityHandle handle)
            {
                switch (handle.Kind)
                {
                    case HandleKind.TypeReference:
                        return FromAssemblies((TypeReferenceHandle)handle);
                    case HandleKind.TypeSpecification:
                        return _reader.GetTypeSpecification((TypeSpecificationHandle)handle).DecodeSignature(this, null);
                    case HandleKind.MemberReference:
                    {
                        var member = _reader.GetMemberReference((MemberReferenceHandle)handle);
                        if (Uses(member.Parent))
                        {
                            return true;
                        }

                        if (member.GetKind() == MemberReferenceKind.Field)
                        {
                            return member.DecodeFieldSignature(this, null);
                        }

                        var signature = member.DecodeMethodSignature(this, null);
                        return signature.ReturnType || signature.ParameterTypes.Any(p => p);
                    }

                    case HandleKind.MethodSpecification:
                    {
                        var spec = _reader.GetMethodSpecification((MethodSpecificationHandle)handle);
                        return Uses(spec.Method) || spec.DecodeSignature(this, null).Any(t => t);
                    }

                    case HandleKind.MethodDefinition:
                    {
                        var signature = _reader.GetMethodDefinition((MethodDefinitionHandle)handle).DecodeSignature(this, null);
                        return signature.ReturnType || signature.ParameterTypes.Any(p => p);
                    }

                    case HandleKind.FieldDefinition:
                        return _reader.GetFieldDefinition((FieldDefinitionHandle)handle).DecodeSignature(this, null);
                    case HandleKind.StandaloneSignature:
                    {
                        var standalone = _reader.GetStandaloneSignature((StandaloneSignatureHandle)handle);
                        if (standalone.GetKind() == StandaloneSignatureKind.LocalVariables)
                        {
                            return standalone.DecodeLocalSignature(this, null).Any(l => l);
                        }

                        var signature = standalone.DecodeMethodSignature(this, null);
                        return signature.ReturnType || signature.ParameterTypes.Any(p => p);
                    }

                    default:
                        return false;
                }
            }

            private bool FromAssemblies(TypeReferenceHandle handle)
            {
                var type = _reader.GetTypeReference(handle);
                switch (type.ResolutionScope.Kind)
                {
                    case HandleKind.AssemblyReference:
                        return _assemblies.Contains(_reader.GetString(_reader.GetAssemblyReference((AssemblyReferenceHandle)type.ResolutionScope).Name));
                    case HandleKind.TypeReference:
                        return FromAssemblies((TypeReferenceHandle)type.ResolutionScope);
                    default:
                        return false;
                }
            }

            public bool GetArrayType(bool elementType, ArrayShape shape) => elementType;

            public bool GetByReferenceType(bool elementType) => elementType;

            public bool GetFunctionPointerType(MethodSignature<bool> signature) => signature.ReturnType || signature.ParameterTypes.Any(p => p);

            public bool GetGenericInstantiation(bool genericType, ImmutableArray<bool> typeArguments) => genericType || typeArguments.Any(a => a);

            public bool GetGenericMethodParameter(object genericContext, int index) => false;

            public bool GetGenericTypeParameter(object genericContext, int index) => false;

            public bool GetModifiedType(bool modifier, bool unmodifiedType, bool isRequired) => modifier || unmodifiedType;

            public bool GetPinnedType(bool elementType) => elementType;

            public bool GetPointerType(bool elementType) => elementType;

            public bool GetPrimitiveType(PrimitiveTypeCode typeCode) => false;

            public bool GetSZArrayType(bool elementType) => elementType;

            public bool GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind) => false;

            public bool GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind) => FromAssemblies(handle);

            public bool GetTypeFromSpecification(MetadataReader reader, object genericContext, TypeSpecificationHandle handle, byte rawTypeKind)
                => reader.GetTypeSpecification(handle).DecodeSignature(this, genericContext);
        }
    }
}
